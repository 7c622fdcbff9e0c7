"""Bybit client, DuckDB storage and ingestion."""
