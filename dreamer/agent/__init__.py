"""The actor-critic trained in imagination."""
