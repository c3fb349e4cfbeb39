"""Builders of shipped data and test data, and fetchers of the real test heads (not installed)."""
