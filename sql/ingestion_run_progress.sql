-- Committed together with each page, so the log never disagrees with the table.
UPDATE ingestion_runs SET
    effective_start = $effective_start,
    effective_end = $effective_end,
    rows_received = $rows_received,
    rows_inserted = $rows_inserted,
    rows_updated = $rows_updated,
    rows_unchanged = $rows_unchanged,
    open_candles_dropped = $open_candles_dropped,
    requests = $requests,
    retries = $retries,
    fetch_s = $fetch_s,
    write_s = $write_s
WHERE id = $id;
