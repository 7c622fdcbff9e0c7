"""Prefect flows: thin orchestration over the plain stage functions in `dreamer.pipeline`."""
