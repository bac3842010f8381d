"""`construct`: a pydantic model built from values that need no validation.

The one home of building models trusted (docs/performance.md): the Responses API's
models (`llmroute.responses`) and a plain chat request (`_request.plain_chat_request`)
are built with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["construct"]

M = TypeVar("M", bound=BaseModel)
_new = object.__new__
# The setters of the slots every pydantic model has, called directly: they take their
# two arguments without `object.__setattr__`'s argument slicing, type check and name
# lookup (~2,900 of a small model's ~10,100 instructions, callgrind).
_SLOTS = BaseModel.__dict__
_set_dict = _SLOTS["__dict__"].__set__
_set_fields = _SLOTS["__pydantic_fields_set__"].__set__
_set_extra = _SLOTS["__pydantic_extra__"].__set__
_set_private = _SLOTS["__pydantic_private__"].__set__


def construct(
    cls: type[M],
    values: dict[str, Any],
    fields: Iterable[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> M:
    """A `cls` holding `values`, trusted (not validated; taken, not copied).

    `values` must give every field of `cls`, defaults included; `fields` names those
    that count as set, so are dumped (all of `values` if None); `extra` holds the extra
    fields (set too, as validation counts them). What `model_construct` makes, for a
    quarter of its instructions (a small model: ~7,300 against ~27,400, callgrind;
    ~10,100 when it set the slots through `object.__setattr__`, bca4e87); pydantic-core's
    validator costs ~7,800 for a small flat model, and less per model for a nested one
    (`usage_from_tokens`).
    Oracle: tests/test_responses_types.py (every builder's result validates back equal).
    """
    model = _new(cls)
    given = set(values if fields is None else fields)
    if extra is None:
        extra = {}
    else:
        given.update(extra)  # as validation counts them
    _set_dict(model, values)
    _set_fields(model, given)
    _set_extra(model, extra)
    _set_private(model, None)
    return model
