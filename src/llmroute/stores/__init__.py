"""Connections to the shared stores (Redis for the cache and the limits) and opening SQLite files."""
