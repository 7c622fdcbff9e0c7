"""Research at scale: walk-forward evaluation over seeds, folds and symbols, and its honest statistics."""
