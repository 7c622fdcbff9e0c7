-- Per-bar, strictly causal features of one kline series.
--
-- Input: relation `feature_input(open_time TIMESTAMPTZ, open, high, low, close, volume)`, one series, unique
-- open_time; parameter $step, the bar length as a DuckDB INTERVAL string ('5 minutes', '1 day', '1 month').
-- Needs sql/macros.sql (symlog, bps) and TimeZone = 'UTC' on the connection (calendar arithmetic).
--
-- Causality: every feature of bar t is a function of bars <= t only (lag and frames ending at CURRENT ROW).
-- The single exception is `next_log_return`, the target log(close[t+1] / close[t]), kept out of the
-- observation features.
--
-- Gaps: a bar whose predecessor is not exactly one $step earlier starts a new segment (`after_gap`).
-- Every window is partitioned by segment, so no feature ever reaches across a gap, and a feature whose
-- window is not yet full is NULL: the first 288 bars of every segment are warm-up (`warmup`) and are
-- dropped when the dataset is built. Nothing is forward filled; `next_log_return` is NULL on the last bar of
-- a segment.
--
-- Window lengths are in bars; the longest lookback (288) must equal dreamer.features.build.LONGEST_WINDOW.
-- Unbounded quantities are symlog-scaled; bounded encodings (close position in [-1, 1], time sin/cos) enter
-- as they are. Raw price levels never appear among the features.
WITH bars AS (
    SELECT
        open_time,
        open, high, low, close, volume,
        lag(open_time) OVER (ORDER BY open_time) + CAST($step AS INTERVAL) <> open_time AS after_gap
    FROM feature_input
),
segmented AS (
    SELECT
        *,
        sum(CASE WHEN after_gap THEN 1 ELSE 0 END) OVER (ORDER BY open_time ROWS UNBOUNDED PRECEDING)
            AS segment_id
    FROM bars
),
base AS (
    SELECT
        *,
        row_number() OVER seg - 1 AS bars_before,  -- earlier bars of the same segment
        ln(close / lag(close) OVER seg) AS log_return_1,
        ln(1 + volume) AS log_volume_raw
    FROM segmented
    WINDOW seg AS (PARTITION BY segment_id ORDER BY open_time)
)
SELECT
    open_time,
    epoch_ms(open_time) AS open_time_ms,
    close,
    CAST(segment_id AS INTEGER) AS segment_id,
    coalesce(after_gap, false) AS after_gap,
    bars_before < 288 AS warmup,

    -- log returns over k bars (lag within the segment is NULL until k earlier bars exist)
    symlog(bps(log_return_1)) AS ret_1,
    symlog(bps(ln(close / lag(close, 3) OVER seg))) AS ret_3,
    symlog(bps(ln(close / lag(close, 12) OVER seg))) AS ret_12,
    symlog(bps(ln(close / lag(close, 48) OVER seg))) AS ret_48,
    symlog(bps(ln(close / lag(close, 288) OVER seg))) AS ret_288,

    -- realised volatility: root mean square of the last w one-bar log returns
    CASE WHEN bars_before >= 12 THEN symlog(bps(sqrt(
        avg(log_return_1 * log_return_1) OVER (seg ROWS BETWEEN 11 PRECEDING AND CURRENT ROW)))) END AS vol_12,
    CASE WHEN bars_before >= 48 THEN symlog(bps(sqrt(
        avg(log_return_1 * log_return_1) OVER (seg ROWS BETWEEN 47 PRECEDING AND CURRENT ROW)))) END AS vol_48,
    CASE WHEN bars_before >= 288 THEN symlog(bps(sqrt(
        avg(log_return_1 * log_return_1) OVER (seg ROWS BETWEEN 287 PRECEDING AND CURRENT ROW)))) END AS vol_288,

    -- the bar's own shape, relative to its close
    symlog(bps((high - low) / close)) AS range_hl,
    CASE WHEN high > low THEN 2 * (close - low) / (high - low) - 1 ELSE 0 END AS close_position,

    -- activity: log volume and its z-score against the last w bars (0 when volume was constant)
    symlog(volume) AS log_volume,
    CASE WHEN bars_before >= 47 THEN symlog(coalesce(
        (log_volume_raw - avg(log_volume_raw) OVER (seg ROWS BETWEEN 47 PRECEDING AND CURRENT ROW))
        / nullif(stddev_pop(log_volume_raw) OVER (seg ROWS BETWEEN 47 PRECEDING AND CURRENT ROW), 0),
        0)) END AS volume_z_48,
    CASE WHEN bars_before >= 287 THEN symlog(coalesce(
        (log_volume_raw - avg(log_volume_raw) OVER (seg ROWS BETWEEN 287 PRECEDING AND CURRENT ROW))
        / nullif(stddev_pop(log_volume_raw) OVER (seg ROWS BETWEEN 287 PRECEDING AND CURRENT ROW), 0),
        0)) END AS volume_z_288,

    -- calendar, from the UTC epoch (independent of the session time zone); Monday = 0
    sin(2 * pi() * (epoch_ms(open_time) % 86400000) / 86400000) AS time_of_day_sin,
    cos(2 * pi() * (epoch_ms(open_time) % 86400000) / 86400000) AS time_of_day_cos,
    sin(2 * pi() * ((epoch_ms(open_time) // 86400000 + 3) % 7) / 7) AS day_of_week_sin,
    cos(2 * pi() * ((epoch_ms(open_time) // 86400000 + 3) % 7) / 7) AS day_of_week_cos,

    -- the target, NOT a feature: NULL where bar t+1 is missing
    ln(lead(close) OVER seg / close) AS next_log_return
FROM base
WINDOW seg AS (PARTITION BY segment_id ORDER BY open_time)
ORDER BY open_time;
