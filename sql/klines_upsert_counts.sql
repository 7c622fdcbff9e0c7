-- How the staged page (view `staged_klines`) relates to what is stored: new, changed or identical rows.
-- Run right before klines_upsert.sql, in the same transaction.
SELECT
    count(*) FILTER (WHERE k.open_time IS NULL) AS inserted,
    count(*) FILTER (
        WHERE k.open_time IS NOT NULL
          AND (s.open IS DISTINCT FROM k.open OR s.high IS DISTINCT FROM k.high OR s.low IS DISTINCT FROM k.low
               OR s.close IS DISTINCT FROM k.close OR s.volume IS DISTINCT FROM k.volume
               OR s.turnover IS DISTINCT FROM k.turnover)
    ) AS updated,
    count(*) AS received
FROM staged_klines AS s
LEFT JOIN klines AS k
    ON k.category = $category AND k.symbol = $symbol AND k.interval = $interval AND k.open_time = s.open_time;
