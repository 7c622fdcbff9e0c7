"""Held-out backtest, metrics, baselines and plots."""
