"""Validation gate, causal features, chronological splits and the sequence sampler."""
