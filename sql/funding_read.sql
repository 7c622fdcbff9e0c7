-- One perpetual's settlements, optionally bounded (inclusive) by settlement time, oldest first.
SELECT epoch_ms(funding_time) AS funding_time_ms, funding_rate
FROM funding_rates
WHERE category = $category AND symbol = $symbol
  AND ($start IS NULL OR funding_time >= $start)
  AND ($end IS NULL OR funding_time <= $end)
ORDER BY funding_time;
