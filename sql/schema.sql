-- Storage of the data layer. Idempotent: run on every connect (dreamer.data.store.connect).

-- Closed candles only, exactly as the source served them. Prices and sizes are DOUBLE; `turnover`
-- is NULL where the source has none (CSV exports), never 0.
CREATE TABLE IF NOT EXISTS klines (
    category  VARCHAR     NOT NULL,  -- spot | linear | inverse
    symbol    VARCHAR     NOT NULL,  -- e.g. BTCUSDT
    interval  VARCHAR     NOT NULL,  -- Bybit's interval string: 1,3,5,15,30,60,120,240,360,720,D,W,M
    open_time TIMESTAMPTZ NOT NULL,  -- candle start, UTC
    open      DOUBLE      NOT NULL,
    high      DOUBLE      NOT NULL,
    low       DOUBLE      NOT NULL,
    close     DOUBLE      NOT NULL,
    volume    DOUBLE      NOT NULL,
    turnover  DOUBLE,
    PRIMARY KEY (category, symbol, interval, open_time)
);

CREATE SEQUENCE IF NOT EXISTS ingestion_run_id START 1;

-- One row per ingestion run, updated in the same transaction as every page it writes, so the counts
-- always match what is committed. A run killed mid-way keeps status 'running' until the next run of the
-- same series marks it 'interrupted'.
CREATE TABLE IF NOT EXISTS ingestion_runs (
    id               BIGINT PRIMARY KEY DEFAULT nextval('ingestion_run_id'),
    source           VARCHAR     NOT NULL,  -- bybit | csv | sample
    source_detail    VARCHAR,               -- base URL or file path
    category         VARCHAR     NOT NULL,
    symbol           VARCHAR     NOT NULL,
    interval         VARCHAR     NOT NULL,
    requested_start  TIMESTAMPTZ,           -- as asked (NULL: resume from the stored data)
    requested_end    TIMESTAMPTZ,           -- as asked (NULL: up to the last closed candle)
    effective_start  TIMESTAMPTZ,           -- first candle start actually requested/read
    effective_end    TIMESTAMPTZ,           -- last candle start covered
    rows_received    BIGINT      NOT NULL DEFAULT 0,
    rows_inserted    BIGINT      NOT NULL DEFAULT 0,
    rows_updated     BIGINT      NOT NULL DEFAULT 0,
    rows_unchanged   BIGINT      NOT NULL DEFAULT 0,
    open_candles_dropped BIGINT  NOT NULL DEFAULT 0,
    requests         INTEGER     NOT NULL DEFAULT 0,
    retries          INTEGER     NOT NULL DEFAULT 0,
    gaps_found       INTEGER,               -- number of holes in the stored series over the covered range
    missing_candles  BIGINT,                -- candles inside those holes
    gap_sample       VARCHAR,               -- JSON list of the first holes: [{"start": iso, "end": iso, "missing": n}]
    status           VARCHAR     NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    error            VARCHAR,
    started_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ,
    duration_s       DOUBLE,                -- wall time of the whole run
    fetch_s          DOUBLE,                -- time spent waiting on the source (network, backoff, pacing)
    write_s          DOUBLE                 -- time spent parsing, checking and upserting
);
