-- One series, optionally bounded (inclusive) by candle start, oldest first.
SELECT category, symbol, interval, open_time, open, high, low, close, volume, turnover
FROM klines
WHERE category = $category AND symbol = $symbol AND interval = $interval
  AND ($start IS NULL OR open_time >= $start)
  AND ($end IS NULL OR open_time <= $end)
ORDER BY open_time;
