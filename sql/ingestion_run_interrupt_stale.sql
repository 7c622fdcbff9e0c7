-- DuckDB lets one process write a database file at a time, so a run of this series and kind still marked
-- 'running' when a new one starts belongs to a process that died (kill -9, power loss).
UPDATE ingestion_runs SET
    status = 'interrupted',
    error = 'the process ended before the run finished; its committed pages are kept'
WHERE status = 'running' AND kind = $kind AND category = $category AND symbol = $symbol
  AND interval IS NOT DISTINCT FROM $interval;
