"""Research at scale: walk-forward refits over many windows and seeds (`dreamer.research.walk_forward`),
their persisted backtests (`dreamer.research.backtests`) and configuration (`dreamer.research.config`)."""
