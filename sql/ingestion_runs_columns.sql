-- The columns of `ingestion_runs` as the database has them (to see whether a migration is due).
SELECT column_name FROM information_schema.columns WHERE table_name = 'ingestion_runs';
