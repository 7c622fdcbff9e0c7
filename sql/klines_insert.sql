-- Append the staged page (view `staged_klines`) when none of its candles is stored yet
-- (see klines_count_span.sql); the primary key still guards against duplicates.
INSERT INTO klines (category, symbol, interval, open_time, open, high, low, close, volume, turnover)
SELECT $category, $symbol, $interval, open_time, open, high, low, close, volume, turnover
FROM staged_klines;
