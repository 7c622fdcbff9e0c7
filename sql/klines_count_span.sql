-- Stored candles of one series between two candle starts (inclusive): 0 means a staged page of that
-- span is entirely new and can be appended without conflict handling (the common, fast case).
SELECT count(*) FROM klines
WHERE category = $category AND symbol = $symbol AND interval = $interval AND open_time BETWEEN $first AND $last;
