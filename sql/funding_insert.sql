-- Append the staged page (view `staged_funding`) when none of its settlements is stored yet
-- (see funding_count_span.sql); the primary key still guards against duplicates.
INSERT INTO funding_rates (category, symbol, funding_time, funding_rate)
SELECT $category, $symbol, funding_time, funding_rate
FROM staged_funding;
