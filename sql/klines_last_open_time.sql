-- Where an incremental run resumes: the newest stored candle of one series (NULL when empty).
SELECT epoch_ms(max(open_time)) FROM klines
WHERE category = $category AND symbol = $symbol AND interval = $interval;
