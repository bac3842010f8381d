"""Oracle tests of the Responses translation's fast paths (docs/performance.md): each one
against the plain way it replaces, over many shapes drawn by hypothesis.

- `response_usage` (shared all-zero details) against validating the usage.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from llmroute._types import CompletionUsage
from llmroute.responses import (
    InputTokensDetails,
    ResponseUsage,
    usage_from_tokens,
)
from llmroute.responses.translate import usage_of
from llmroute.responses.types import response_usage


def _same(fast: Any, plain: Any, where: str = "") -> None:
    """`fast` is what `plain` is: the same types all the way down, the same values, the
    same fields set and extras, in the same order."""
    assert type(fast) is type(plain), where
    if isinstance(plain, BaseModel):
        assert fast.model_fields_set == plain.model_fields_set, where
        assert list(fast.__dict__) == list(plain.__dict__), where
        _same(fast.__dict__, plain.__dict__, where)
        _same(fast.__pydantic_extra__, plain.__pydantic_extra__, f"{where}(extra)")
        assert fast.__pydantic_private__ == plain.__pydantic_private__, where
    elif isinstance(plain, dict):
        assert list(fast) == list(plain), where
        for key in plain:
            _same(fast[key], plain[key], f"{where}.{key}")
    elif isinstance(plain, list):
        assert len(fast) == len(plain), where
        for index, (a, b) in enumerate(zip(fast, plain, strict=True)):
            _same(a, b, f"{where}[{index}]")
    else:
        assert fast == plain, where


# ---------------------------------------------------------------- usage and the response

_COUNT = st.one_of(st.just(0), st.integers(0, 10**6))


@settings(max_examples=300, deadline=None)
@given(counts=st.tuples(_COUNT, _COUNT, _COUNT, _COUNT, _COUNT))
def test_response_usage_is_what_validation_builds(counts: tuple[int, ...]) -> None:
    """`response_usage` (zero details shared) builds what one validation of the usage does;
    `usage_of` reads a completion's usage as `CompletionUsage.normalised` does."""
    made, given, cached, written, reasoning = counts
    fast = response_usage(made, given, cached, written, reasoning)
    plain = ResponseUsage.model_validate({
        "input_tokens": made, "output_tokens": given, "total_tokens": made + given,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens_details": {"reasoning_tokens": reasoning},
    })  # fmt: skip
    _same(fast, plain)
    usage = CompletionUsage.model_validate({
        "prompt_tokens": made, "completion_tokens": given, "total_tokens": made + given,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    })  # fmt: skip
    read = usage_of(usage)
    assert read is not None
    _same(read, plain)
    _same(usage_from_tokens(usage.normalised()), plain)
    assert read.normalised() == usage.normalised()


def test_shared_usage_details_cannot_be_changed() -> None:
    usage = response_usage(3, 2, 0, 0, 0)
    assert usage.input_tokens_details is response_usage(5, 1, 0, 0, 0).input_tokens_details
    with pytest.raises(ValidationError, match="frozen"):
        usage.input_tokens_details.cached_tokens = 1
    assert response_usage(3, 2, 0, 0, 0).input_tokens_details == InputTokensDetails()
