"""Routing decisions: target health, attempt planning, selection. Pure logic, no I/O."""
