-- How the staged page (view `staged_funding`) relates to what is stored: new, changed or identical rows.
-- Run right before funding_upsert.sql, in the same transaction.
SELECT
    count(*) FILTER (WHERE f.funding_time IS NULL) AS inserted,
    count(*) FILTER (WHERE f.funding_time IS NOT NULL AND s.funding_rate IS DISTINCT FROM f.funding_rate) AS updated,
    count(*) AS received
FROM staged_funding AS s
LEFT JOIN funding_rates AS f
    ON f.category = $category AND f.symbol = $symbol AND f.funding_time = s.funding_time;
