-- Per-bar, strictly causal features of one kline series.
--
-- Input: relation `feature_input(open_time TIMESTAMPTZ, open, high, low, close, volume)`, one series, unique
-- open_time; relation `funding_input(funding_time_ms BIGINT, funding_rate DOUBLE)`, the series' funding
-- settlements (unique times); parameter $step, the bar length as a DuckDB INTERVAL string ('5 minutes',
-- '1 day', '1 month'); parameter $funded, whether the contract settles funding (a perpetual) at all.
-- Needs sql/macros.sql (symlog, bps) and TimeZone = 'UTC' on the connection (calendar arithmetic).
--
-- Causality: every feature of bar t is a function of bars <= t and of settlements at or before the close
-- of bar t only (lag and frames ending at CURRENT ROW; an as-of join on the close). The single exception
-- is `next_log_return`, the target log(close[t+1] / close[t]), kept out of the observation features. Also
-- not features: `funding_rate_known`, the latest settled rate (what imagination charges), and
-- `funding_settled_sum` / `funding_settled_count`, the rates and the number of settlements up to the
-- close of t, summed over the settlements given. Their difference between two rows is the funding a unit
-- long held from the first close to the second pays (see dreamer/trading.py for the timing).
--
-- Funding features: the latest settled rate, the mean of the last three (a day on the 8-hour schedule) and
-- the share of the settlement interval still to run before the next one (the interval is the spacing of
-- the last two settlements: 8, 4 or 1 hour). On a perpetual they are NULL, so the bar is warm-up, until
-- three settlements precede it; on a contract without funding ($funded false) they are 0.
--
-- Gaps: a bar whose predecessor is not exactly one $step earlier starts a new segment (`after_gap`).
-- Every window over bars is partitioned by segment, so no bar feature ever reaches across a gap, and a
-- feature whose window is not yet full is NULL: the first 2016 bars of every segment are warm-up (`warmup`)
-- and are dropped when the dataset is built. Nothing is forward filled; `next_log_return` is NULL on the
-- last bar of a segment. Funding features read settlements, not bars: the latest one at the close is the
-- rate in force whatever bars are missing.
--
-- Window lengths are in bars; the longest lookback (2016) must equal dreamer.features.build.LONGEST_WINDOW.
-- Unbounded quantities are symlog-scaled; bounded encodings (close position in [-1, 1], time sin/cos) enter
-- as they are. Raw price levels never appear among the features.
WITH bars AS (
    SELECT
        open_time,
        epoch_ms(open_time + CAST($step AS INTERVAL)) AS close_time_ms,
        open, high, low, close, volume,
        lag(open_time) OVER (ORDER BY open_time) + CAST($step AS INTERVAL) <> open_time AS after_gap
    FROM feature_input
),
settlements AS (
    SELECT
        funding_time_ms,
        funding_rate,
        funding_time_ms - lag(funding_time_ms) OVER w AS interval_ms,
        CASE WHEN count(*) OVER (w ROWS 2 PRECEDING) = 3 THEN avg(funding_rate) OVER (w ROWS 2 PRECEDING) END
            AS mean_3,
        sum(funding_rate) OVER (w ROWS UNBOUNDED PRECEDING) AS settled_sum,
        count(*) OVER (w ROWS UNBOUNDED PRECEDING) AS settled_count
    FROM funding_input
    WINDOW w AS (ORDER BY funding_time_ms)
),
funded_bars AS (
    -- each bar with the latest settlement at or before its close
    SELECT
        bars.*,
        settlements.funding_rate AS last_rate,
        settlements.mean_3 AS last_mean_3,
        settlements.funding_time_ms AS last_time_ms,
        settlements.interval_ms,
        coalesce(settlements.settled_sum, 0) AS settled_sum,
        coalesce(settlements.settled_count, 0) AS settled_count
    FROM bars ASOF LEFT JOIN settlements ON bars.close_time_ms >= settlements.funding_time_ms
),
segmented AS (
    SELECT
        *,
        sum(CASE WHEN after_gap THEN 1 ELSE 0 END) OVER (ORDER BY open_time ROWS UNBOUNDED PRECEDING)
            AS segment_id
    FROM funded_bars
),
base AS (
    SELECT
        *,
        row_number() OVER seg - 1 AS bars_before,  -- earlier bars of the same segment
        ln(close / lag(close) OVER seg) AS log_return_1,
        ln(1 + volume) AS log_volume_raw,
        CASE WHEN $funded THEN symlog(bps(last_rate)) ELSE 0 END AS funding_last,
        CASE WHEN $funded THEN symlog(bps(last_mean_3)) ELSE 0 END AS funding_mean_3,
        CASE WHEN $funded THEN greatest(0, least(1,
            (last_time_ms + interval_ms - close_time_ms) / nullif(interval_ms, 0))) ELSE 0 END AS funding_countdown
    FROM segmented
    WINDOW seg AS (PARTITION BY segment_id ORDER BY open_time)
)
SELECT
    open_time,
    epoch_ms(open_time) AS open_time_ms,
    close,
    CAST(segment_id AS INTEGER) AS segment_id,
    coalesce(after_gap, false) AS after_gap,
    bars_before < 2016 OR funding_last IS NULL OR funding_mean_3 IS NULL OR funding_countdown IS NULL AS warmup,

    -- log returns over k bars (lag within the segment is NULL until k earlier bars exist)
    symlog(bps(log_return_1)) AS ret_1,
    symlog(bps(ln(close / lag(close, 3) OVER seg))) AS ret_3,
    symlog(bps(ln(close / lag(close, 12) OVER seg))) AS ret_12,
    symlog(bps(ln(close / lag(close, 48) OVER seg))) AS ret_48,
    symlog(bps(ln(close / lag(close, 288) OVER seg))) AS ret_288,

    -- the close against the mean log close of the last week (2016 bars): how far the price has strayed from
    -- its recent level, the quantity a mean-reversion trader watches
    CASE WHEN bars_before >= 2016 THEN symlog(bps(
        ln(close) - avg(ln(close)) OVER (seg ROWS BETWEEN 2015 PRECEDING AND CURRENT ROW))) END AS close_vs_mean_2016,

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

    -- funding settlements known at the close (0 on a contract without funding)
    funding_last,
    funding_mean_3,
    funding_countdown,
    CASE WHEN $funded THEN last_rate ELSE 0 END AS funding_rate_known,  -- raw, for imagination: NOT a feature

    -- settled up to the close, over the whole series (a position held through missing bars pays what settled
    -- meanwhile), NOT features
    settled_sum AS funding_settled_sum,
    settled_count AS funding_settled_count,

    -- the target, NOT a feature: NULL where bar t+1 is missing
    ln(lead(close) OVER seg / close) AS next_log_return
FROM base
WINDOW seg AS (PARTITION BY segment_id ORDER BY open_time)
ORDER BY open_time;
