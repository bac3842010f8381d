"""Routing decisions: target health, selection strategies, conditions. Pure logic, no I/O.

The public pieces for writing your own strategy are re-exported here:
`Strategy`, `Selection` and `SelectionContext` (see `strategies`). The
candidates a strategy orders are `llmroute.routing.catalog.Target` objects: use their
`key` (``provider/model``), `provider.name`, `model`, `weight` and `price`.
"""

from .strategies import Selection, SelectionContext, Strategy

__all__ = ["Selection", "SelectionContext", "Strategy"]
