"""A span with no parent is decided by the root sampler's rule applied early (`root_bound`).

The rule is checked against the SDK's own sampler, asked with the very trace ids the
decider draws (an id generator that hands them out in turn), over hypothesis' rates and
ids and the ids either side of each bound; and an SDK whose rule differs from the one
applied early makes the decider ask its sampler every time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import baggage, context, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from llmroute.observe.sampling import Decider, root_bound

LOW = (1 << 64) - 1
TRACE_IDS = st.integers(min_value=1, max_value=(1 << 128) - 1)
RATES = st.one_of(
    st.sampled_from([0.0, 1.0, 0.5, 0.1, 1e-9, 1 - 1e-12]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)


class Scripted(IdGenerator):
    """Trace ids handed out in the order they are given."""

    def __init__(self) -> None:
        self.next: Iterator[int] = iter(())

    def generate_trace_id(self) -> int:
        return next(self.next)

    def generate_span_id(self) -> int:
        return 1


def samplers(rate: float) -> list[Sampler]:
    ratio = TraceIdRatioBased(rate)
    return [ratio, ParentBased(ratio), ParentBased(TraceIdRatioBased(rate), ALWAYS_OFF)]


def decided(sampler: Sampler, parent: Context, trace_ids: list[int]) -> list[tuple[int, int]]:
    """(the decider's answer, the sampler's own) for each trace id."""
    ids = Scripted()
    provider = TracerProvider(sampler=sampler, id_generator=ids)
    decider = Decider.of(provider.get_tracer("test"))
    assert decider is not None
    answers = []
    for trace_id in trace_ids:
        ids.next = iter([trace_id])
        kept = sampler.should_sample(parent, trace_id, "", SpanKind.CLIENT)
        answers.append((decider.decide(parent), trace_id if kept.decision.is_recording() else 0))
    return answers


@given(rate=RATES, trace_ids=st.lists(TRACE_IDS, max_size=20))
def test_a_root_span_is_kept_as_the_sdks_sampler_keeps_it(
    rate: float, trace_ids: list[int]
) -> None:
    bound = TraceIdRatioBased(rate).bound
    lows = [low for low in (bound - 1, bound, bound + 1) if 0 < low <= LOW]
    near = [(high << 64) | low for high in (0, 7) for low in lows]
    for sampler in samplers(rate):
        assert root_bound(sampler) == bound
        for parent in (Context(), baggage.set_baggage("team", "a", Context())):
            for ours, sdks in decided(sampler, parent, trace_ids + near):
                assert ours == sdks


@pytest.mark.parametrize(
    ("sampler", "bound"),
    [(ALWAYS_ON, 1 << 64), (ALWAYS_OFF, 0), (ParentBased(ALWAYS_ON), 1 << 64),
     (ParentBased(ALWAYS_OFF), 0)],
)  # fmt: skip
def test_always_on_and_off_roots_have_the_widest_and_no_bound(sampler: Sampler, bound: int) -> None:
    assert root_bound(sampler) == bound
    for ours, sdks in decided(sampler, Context(), [1, LOW, 1 << 64, (1 << 128) - 1]):
        assert ours == sdks


def test_an_sdk_whose_rule_changed_is_asked_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were the SDK's bound for a rate not what `root_bound` computes (a new rule), the
    decider would ask the sampler itself: its answers stay the SDK's."""
    sampler = ParentBased(TraceIdRatioBased(0.25))
    bound = TraceIdRatioBased(0.25).bound
    rule = TraceIdRatioBased.get_bound_for_rate
    monkeypatch.setattr(
        TraceIdRatioBased, "get_bound_for_rate", classmethod(lambda cls, rate: rule(rate) + 3)
    )
    assert root_bound(sampler) is None
    trace_ids = [bound - 1, bound, bound + 1, bound + 2, bound + 3]
    answers = decided(sampler, Context(), trace_ids)
    assert [sdks for _, sdks in answers] == [bound - 1, 0, 0, 0, 0]
    assert all(ours == sdks for ours, sdks in answers)


def test_no_context_given_is_the_current_one_as_for_the_sdk() -> None:
    """`decide(None)` reads the current context, as the SDK's samplers do: under a sampled
    span made current, a parent-based sampler whose root keeps nothing keeps the span."""
    sampler = ParentBased(ALWAYS_OFF)
    decider = Decider.of(TracerProvider(sampler=sampler).get_tracer("test"))
    assert decider is not None
    assert decider.decide(None) == 0 and decider.decide(Context()) == 0
    parent = SpanContext(trace_id=42, span_id=7, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))  # fmt: skip
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        assert decider.decide(None) == 42
        assert decider.decide(Context()) == 0  # an empty context given: no parent
    finally:
        context.detach(token)


def test_a_request_with_no_parent_span_does_not_ask_the_sampler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The point of the rule: with no parent span (an empty context, or one holding only
    baggage) the decider answers alone; a parent span makes it ask the sampler."""
    sampler = ParentBased(TraceIdRatioBased(0.5))
    decider = Decider.of(TracerProvider(sampler=sampler).get_tracer("test"))
    assert decider is not None
    asked = []
    should_sample = ParentBased.should_sample

    def counted(self: ParentBased, *args: object, **kwargs: object) -> object:
        asked.append(args)
        return should_sample(self, *args, **kwargs)

    monkeypatch.setattr(ParentBased, "should_sample", counted)
    for _ in range(20):
        decider.decide(Context())
        decider.decide(baggage.set_baggage("team", "a", Context()))
    assert asked == []
    parent = SpanContext(trace_id=42, span_id=7, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))  # fmt: skip
    assert decider.decide(trace.set_span_in_context(NonRecordingSpan(parent))) == 42
    assert len(asked) == 1


def test_a_rate_not_written_as_a_decimal_leaves_the_sampler_asked() -> None:
    """A rate whose description is not a decimal number (a fraction) gives no bound: the
    decider asks the sampler, whose answers it then gives."""
    sampler = TraceIdRatioBased(Fraction(1, 3))
    assert root_bound(sampler) is None
    bound = sampler.bound
    for ours, sdks in decided(sampler, Context(), [bound - 1, bound, 1 << 70 | bound]):
        assert ours == sdks


def test_a_sampler_failing_a_probe_is_asked_each_time_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def failing(*args: object, **kwargs: object) -> object:
        raise RuntimeError("probe refused")

    sampler = TraceIdRatioBased(0.25)
    monkeypatch.setattr(TraceIdRatioBased, "should_sample", failing)
    with caplog.at_level(logging.WARNING, logger="llmroute"):
        assert root_bound(sampler) is None
    assert "failed a probe" in caplog.text and "probe refused" in caplog.text
