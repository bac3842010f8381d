"""The curated public API: `__all__` is sorted, complete and importable."""

from __future__ import annotations

import inspect

import llmroute


def test_all_is_sorted_and_unique() -> None:
    assert list(llmroute.__all__) == sorted(set(llmroute.__all__))


def test_all_names_exist() -> None:
    missing = [name for name in llmroute.__all__ if not hasattr(llmroute, name)]
    assert missing == []


def test_every_public_class_and_function_is_exported() -> None:
    public = {
        name
        for name, value in vars(llmroute).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert public - set(llmroute.__all__) == set()


def test_every_export_is_documented() -> None:
    undocumented = [
        name
        for name in llmroute.__all__
        if name != "__version__" and not inspect.getdoc(getattr(llmroute, name))
    ]
    assert undocumented == []


def test_error_tree() -> None:
    assert issubclass(llmroute.RateLimited, llmroute.ProviderError)
    assert llmroute.RateLimited.retryable
    assert llmroute.ProviderUnavailable.retryable
    assert llmroute.MalformedResponse.retryable
    assert issubclass(llmroute.MalformedResponse, llmroute.ProviderUnavailable)
    assert not llmroute.InvalidRequest.retryable
    assert not llmroute.AuthenticationError.retryable
    assert issubclass(llmroute.UnknownModel, llmroute.RequestError)
    for name in ("ConfigError", "RequestError", "ProviderError", "StreamInterrupted",
                 "AllTargetsFailed", "LocalRateLimitExceeded", "BudgetExceeded"):  # fmt: skip
        assert issubclass(getattr(llmroute, name), llmroute.LLMRouteError)
