UPDATE ingestion_runs SET
    status = $status,
    error = $error,
    gaps_found = $gaps_found,
    missing_candles = $missing_candles,
    gap_sample = $gap_sample,
    finished_at = $finished_at,
    duration_s = $duration_s
WHERE id = $id;
