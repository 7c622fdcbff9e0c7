-- Insert the staged page (view `staged_klines`: open_time, open, high, low, close, volume, turnover);
-- rows already stored are overwritten only where a value differs, so reruns rewrite nothing.
INSERT INTO klines (category, symbol, interval, open_time, open, high, low, close, volume, turnover)
SELECT $category, $symbol, $interval, open_time, open, high, low, close, volume, turnover
FROM staged_klines
ON CONFLICT (category, symbol, interval, open_time) DO UPDATE SET
    open = excluded.open,
    high = excluded.high,
    low = excluded.low,
    close = excluded.close,
    volume = excluded.volume,
    turnover = excluded.turnover
WHERE klines.open IS DISTINCT FROM excluded.open
   OR klines.high IS DISTINCT FROM excluded.high
   OR klines.low IS DISTINCT FROM excluded.low
   OR klines.close IS DISTINCT FROM excluded.close
   OR klines.volume IS DISTINCT FROM excluded.volume
   OR klines.turnover IS DISTINCT FROM excluded.turnover;
