-- The first and newest stored candle starts of one series (NULLs when empty): where an incremental run
-- resumes, and what the funding history must cover.
SELECT epoch_ms(min(open_time)), epoch_ms(max(open_time)) FROM klines
WHERE category = $category AND symbol = $symbol AND interval = $interval;
