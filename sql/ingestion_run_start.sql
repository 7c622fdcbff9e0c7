INSERT INTO ingestion_runs (kind, source, source_detail, category, symbol, interval, requested_start, requested_end,
                            status, started_at)
VALUES ($kind, $source, $source_detail, $category, $symbol, $interval, $requested_start, $requested_end,
        'running', $started_at)
RETURNING id;
