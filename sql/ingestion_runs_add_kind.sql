-- Migrates an `ingestion_runs` table from before funding ingestion (store.connect runs this once, when
-- the column `kind` is missing): every existing run ingested klines, and funding runs have no interval.
ALTER TABLE ingestion_runs ADD COLUMN kind VARCHAR NOT NULL DEFAULT 'klines';
ALTER TABLE ingestion_runs ALTER COLUMN interval DROP NOT NULL;
