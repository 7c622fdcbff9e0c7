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

-- Funding settlements of perpetual contracts (categories linear and inverse), exactly as the source
-- served them: a position open at `funding_time` pays `position value × funding_rate` (positive: longs
-- pay shorts). The settlement schedule (8 h, 4 h, 1 h) is whatever the data say; nothing is filled in.
CREATE TABLE IF NOT EXISTS funding_rates (
    category     VARCHAR     NOT NULL,  -- linear | inverse
    symbol       VARCHAR     NOT NULL,  -- e.g. BTCUSDT
    funding_time TIMESTAMPTZ NOT NULL,  -- settlement time, UTC (Bybit's fundingRateTimestamp)
    funding_rate DOUBLE      NOT NULL,  -- fraction per settlement: 0.0001 = 0.01 %
    PRIMARY KEY (category, symbol, funding_time)
);

CREATE SEQUENCE IF NOT EXISTS ingestion_run_id START 1;

-- One row per ingestion run of klines or of funding (`kind`), updated in the same transaction as every
-- page it writes, so the counts always match what is committed. A run killed mid-way keeps status
-- 'running' until the next run of the same series and kind marks it 'interrupted'.
-- Databases created before funding existed lack `kind` and have `interval` NOT NULL: store.connect
-- migrates them (ingestion_runs_add_kind.sql).
CREATE TABLE IF NOT EXISTS ingestion_runs (
    id               BIGINT PRIMARY KEY DEFAULT nextval('ingestion_run_id'),
    source           VARCHAR     NOT NULL,  -- bybit | csv | sample
    source_detail    VARCHAR,               -- base URL or file path
    category         VARCHAR     NOT NULL,
    symbol           VARCHAR     NOT NULL,
    interval         VARCHAR,               -- klines: Bybit's interval; funding: NULL
    requested_start  TIMESTAMPTZ,           -- as asked (NULL: resume from the stored data)
    requested_end    TIMESTAMPTZ,           -- as asked (NULL: up to the last closed candle)
    effective_start  TIMESTAMPTZ,           -- first candle start (funding: time) actually requested/read
    effective_end    TIMESTAMPTZ,           -- last candle start (funding: time) covered
    rows_received    BIGINT      NOT NULL DEFAULT 0,
    rows_inserted    BIGINT      NOT NULL DEFAULT 0,
    rows_updated     BIGINT      NOT NULL DEFAULT 0,
    rows_unchanged   BIGINT      NOT NULL DEFAULT 0,
    open_candles_dropped BIGINT  NOT NULL DEFAULT 0,
    requests         INTEGER     NOT NULL DEFAULT 0,
    retries          INTEGER     NOT NULL DEFAULT 0,
    gaps_found       INTEGER,               -- klines: holes in the stored series over the covered range
    missing_candles  BIGINT,                -- klines: candles inside those holes
    gap_sample       VARCHAR,               -- JSON list of the first holes: [{"start": iso, "end": iso, "missing": n}]
    status           VARCHAR     NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    error            VARCHAR,
    started_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ,
    duration_s       DOUBLE,                -- wall time of the whole run
    fetch_s          DOUBLE,                -- time spent waiting on the source (network, backoff, pacing)
    write_s          DOUBLE,                -- time spent parsing, checking and upserting
    kind             VARCHAR     NOT NULL DEFAULT 'klines'  -- klines | funding
);
