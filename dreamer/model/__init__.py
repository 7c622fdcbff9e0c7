"""The DreamerV3 world model: RSSM, heads and losses."""
