"""Helpers shared by the public and hidden tests: the implementation under test, oracles,
hypothesis strategies and assertions with student-readable messages."""
