-- Holes in one stored series between $start and $end (inclusive): for each pair of consecutive stored
-- candles further apart than one interval ($step, e.g. '5 minutes', '1 month'), the first and last
-- missing candle start, as epoch milliseconds.
WITH series AS (
    SELECT open_time, lag(open_time) OVER (ORDER BY open_time) AS previous
    FROM klines
    WHERE category = $category AND symbol = $symbol AND interval = $interval
      AND open_time BETWEEN $start AND $end
)
SELECT epoch_ms(previous + CAST($step AS INTERVAL)) AS gap_start_ms,
       epoch_ms(open_time - CAST($step AS INTERVAL)) AS gap_end_ms
FROM series
WHERE previous + CAST($step AS INTERVAL) < open_time
ORDER BY gap_start_ms;
