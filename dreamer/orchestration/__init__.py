"""MLflow tracking, model registry and promotion."""
