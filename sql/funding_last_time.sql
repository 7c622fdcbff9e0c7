-- Where an incremental funding run resumes: the newest stored settlement of one perpetual (NULL when none).
SELECT epoch_ms(max(funding_time)) FROM funding_rates WHERE category = $category AND symbol = $symbol;
