"""Research at scale: walk-forward refits over many windows and seeds (`dreamer.research.walk_forward`),
their persisted backtests (`dreamer.research.backtests`), configuration (`dreamer.research.config`) and
honest statistics (`dreamer.research.statistics`)."""
