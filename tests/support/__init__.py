"""Helpers shared by the tests: fakes, harnesses, local clusters (not tests themselves)."""
