"""Routing decisions: target health, selection strategies, conditions. Pure logic, no I/O.

The public pieces for writing your own strategy are re-exported here:
`Strategy`, `Selection` and `SelectionContext`, and the `Target` objects a
strategy orders (immutable: use their `key` (``provider/model``),
`provider.name`, `model`, `weight`, `price`, `context_window`,
`capabilities`). Live state about a target is keyed by its `key`:
`ctx.stats.target(key)` for its statistics, `ctx.cost(target)` and
`ctx.rates(target)` for its price.
"""

from .model import Provider, Selection, SelectionContext, Strategy, Target

__all__ = ["Provider", "Selection", "SelectionContext", "Strategy", "Target"]
