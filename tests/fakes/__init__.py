"""Test doubles shared by the test tiers (a loopback fake Bybit, a fake clock)."""
