"""Training loops: world model, checkpoints."""
