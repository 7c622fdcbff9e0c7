-- Insert the staged page (view `staged_funding`: funding_time, funding_rate); settlements already stored
-- are overwritten only where the rate differs, so reruns rewrite nothing.
INSERT INTO funding_rates (category, symbol, funding_time, funding_rate)
SELECT $category, $symbol, funding_time, funding_rate
FROM staged_funding
ON CONFLICT (category, symbol, funding_time) DO UPDATE SET
    funding_rate = excluded.funding_rate
WHERE funding_rates.funding_rate IS DISTINCT FROM excluded.funding_rate;
