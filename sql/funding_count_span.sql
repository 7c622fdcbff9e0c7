-- Stored settlements of one perpetual between two times (inclusive): 0 means a staged page of that span
-- is entirely new and can be appended without conflict handling (the common, fast case).
SELECT count(*) FROM funding_rates
WHERE category = $category AND symbol = $symbol AND funding_time BETWEEN $first AND $last;
