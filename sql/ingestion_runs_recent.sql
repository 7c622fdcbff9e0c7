-- The latest ingestion runs, newest first.
SELECT * FROM ingestion_runs ORDER BY id DESC LIMIT $limit;
