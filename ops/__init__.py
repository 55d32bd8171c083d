"""Operational tools: a local tritonserver launcher for development and tests."""
