"""Connections to the shared stores that the cache and the limits use."""
