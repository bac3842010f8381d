"""Who a request counts for under a rule's `per`: its user, key, team, route, a property, or everyone."""

from __future__ import annotations

from ..pipeline.stage import RequestContext

__all__ = ["subject_of"]


def subject_of(per: str, ctx: RequestContext) -> str | None:
    """The value `per` picks out of the request, or None when the request has none.

    ``user`` is the request option, else the request body's ``user``, within
    its `user_scope` when it has one (``key/user``: a user a gateway key named,
    not one bound to it); ``route`` is the route name, or ``provider/model``
    for a direct request.
    """
    options = ctx.options
    if per == "global":
        return "*"
    if per == "user":
        user = options.user or getattr(ctx.request, "user", None)
        scope = options.user_scope
        return user if user is None or scope is None else f"{scope}/{user}"
    if per == "key":
        return options.key
    if per == "team":
        return options.team
    if per == "route":
        return ctx.route.name or ctx.request.model
    return options.properties.get(per.removeprefix("property:"))
