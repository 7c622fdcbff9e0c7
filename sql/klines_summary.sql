-- One row per stored series: size and span.
SELECT category, symbol, interval, count(*) AS rows, epoch_ms(min(open_time)) AS first_open_ms,
       epoch_ms(max(open_time)) AS last_open_ms
FROM klines
GROUP BY category, symbol, interval
ORDER BY category, symbol, interval;
