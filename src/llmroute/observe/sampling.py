"""The span sampling decision, taken when a request starts, so an unsampled one builds nothing.

The OpenTelemetry SDK decides whether a span is kept inside ``start_span``, by
which time the caller has built the span's name and attribute dictionaries; a
request that no sampler keeps would pay for them (and for the non-recording
span object) on every request. `Decider` takes the same decision first, with
the SDK's own sampler and id generator: it draws the trace id the SDK would
draw (or takes the parent's) and asks the sampler. A dropped request then
builds no span and no attributes at all. A kept one is started with that very
trace id (the tracer's id generator is wrapped to hand it over once, per
thread), so the SDK's sampler, asked again inside ``start_span``, gives the
same answer: the decision is the SDK's, taken once. For a request with no parent
span (the caller's context holds none: most often it is empty), the root sampler's rule, the
bound under which ``TraceIdRatioBased`` keeps a trace id, is applied without asking
the sampler (`root_bound`, checked against the sampler when the decider is made).

Only samplers whose answer depends on nothing but the parent context and the
trace id are decided early: the SDK's ``AlwaysOn``/``AlwaysOff``,
``TraceIdRatioBased`` and ``ParentBased`` over those (told apart by their home
module and public descriptions: a sampler of another module inside ``ParentBased``
that describes itself as one of these is taken at its word). Any other sampler
may look at the span's name or attributes, so it is asked by the SDK as usual,
with everything built.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

__all__ = ["Decider"]

_log = logging.getLogger("llmroute")

#: The SDK's samplers that read only the parent and the trace id.
_PLAIN = re.compile(r"AlwaysOnSampler|AlwaysOffSampler|TraceIdRatioBased\{[^{}]*\}")
_PARENT_BASED = re.compile(
    r"ParentBased\{root:S,remoteParentSampled:S,remoteParentNotSampled:S,"
    r"localParentSampled:S,localParentNotSampled:S\}"
)
_SDK_SAMPLERS = "opentelemetry.sdk.trace.sampling"
#: A ``ParentBased`` description's root sampler.
_ROOT = re.compile(
    r"ParentBased\{root:(AlwaysOnSampler|AlwaysOffSampler|TraceIdRatioBased\{[^{}]*\}),"
)
#: A ratio sampler's description whose rate reads as a float without raising: a decimal
#: number, with a negative exponent at most (as `repr` writes a rate in [0, 1]).
_RATE = re.compile(r"TraceIdRatioBased\{(\d+(?:\.\d+)?(?:e-\d+)?)\}")
#: The low 64 bits of a trace id, which ``TraceIdRatioBased`` compares with its bound.
_LOW = (1 << 64) - 1


def decided_early(sampler: Any) -> bool:
    """Whether a sampler's answer depends only on the parent context and the trace id."""
    if type(sampler).__module__ != _SDK_SAMPLERS:
        return False
    try:
        described = _PLAIN.sub("S", sampler.get_description())
    except Exception:  # a sampler whose description cannot be read is asked as usual
        return False
    return described == "S" or _PARENT_BASED.fullmatch(described) is not None


class _HandedIds:
    """A tracer's id generator that gives, once per thread, the trace id handed to it."""

    def __init__(self, ids: Any) -> None:
        self.ids = ids
        self._next = threading.local()

    def hand(self, trace_id: int) -> None:
        self._next.trace_id = trace_id

    def generate_trace_id(self) -> int:
        trace_id: int = getattr(self._next, "trace_id", 0)
        if trace_id:
            self._next.trace_id = 0
            return trace_id
        return int(self.ids.generate_trace_id())

    def generate_span_id(self) -> int:
        return int(self.ids.generate_span_id())

    def is_trace_id_random(self) -> bool:
        random = getattr(self.ids, "is_trace_id_random", None)
        return bool(random()) if random is not None else False


class Decider:
    """The early sampling decision for one SDK tracer (see the module's docstring).

    Build it with `Decider.of`, which answers None for a tracer it cannot decide
    for (not the SDK's, or a sampler that may read more than the trace id).
    """

    def __init__(self, tracer: Any, ids: _HandedIds) -> None:
        self._sampler = tracer.sampler
        self._ids = ids
        self._draw = ids.ids.generate_trace_id
        #: A root span's bound (`root_bound`), or None: the sampler is asked each time.
        self._root = root_bound(self._sampler)

    @classmethod
    def of(cls, tracer: Any) -> Decider | None:
        """A decider for an SDK tracer, whose id generator it wraps; None when it cannot decide."""
        sampler = getattr(tracer, "sampler", None)
        ids = getattr(tracer, "id_generator", None)
        if sampler is None or ids is None or not decided_early(sampler):
            return None
        if not isinstance(ids, _HandedIds):
            ids = _HandedIds(ids)
            tracer.id_generator = ids
        return cls(tracer, ids)

    def decide(self, parent: Context | None) -> int:
        """The trace id of a kept span with this parent, or 0 when the span would be dropped.

        With no parent span (a context given that holds none: most often an empty one,
        the common case, told apart without a lookup; None is the current context, as for
        the SDK) and a root sampler whose bound is known, the answer is the sampler's own
        rule, applied here (`root_bound`)."""
        bound = self._root
        if bound is not None and parent is not None:
            if parent:  # values in it: a parent span among them is the sampler's to judge
                span = trace.get_current_span(parent).get_span_context()
                if span.is_valid:
                    return self._asked(parent, span.trace_id)
            if not bound:
                return 0  # never kept: no trace id to draw
            trace_id: int = self._draw()
            return trace_id if trace_id & _LOW < bound else 0
        span = trace.get_current_span(parent).get_span_context()
        trace_id = span.trace_id if span.is_valid else self._ids.generate_trace_id()
        return self._asked(parent, trace_id)

    def _asked(self, parent: Context | None, trace_id: int) -> int:
        """The sampler's answer for a span with this parent and trace id (0: dropped)."""
        result = self._sampler.should_sample(parent, trace_id, "", SpanKind.CLIENT)
        return trace_id if result.decision.is_recording() else 0

    def hand(self, trace_id: int) -> None:
        """Make this thread's next span start with this (already sampled) trace id."""
        self._ids.hand(trace_id)


def root_bound(sampler: Any) -> int | None:
    """The bound a root span's trace id is kept under, for a sampler `decided_early` accepts.

    A span with no parent is kept, by ``TraceIdRatioBased`` (the root of ``ParentBased``
    included), when the low 64 bits of its trace id are under
    ``TraceIdRatioBased.get_bound_for_rate(rate)``; by ``AlwaysOn`` always (the bound
    2**64), by ``AlwaysOff`` never (0). The rate is read from the sampler's description.
    The bound is then checked against the sampler itself on the trace ids either side of
    it: None (ask the sampler every time) when they disagree, as for an SDK whose rule
    has changed, when the rate is written otherwise than as a decimal number, or when a
    probe raises (logged).
    """
    # (imported here: a decider's tracer is the SDK's, which may not be installed otherwise)
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    described = sampler.get_description()  # (`decided_early` has read it)
    parented = _ROOT.match(described)
    root = parented.group(1) if parented else described
    if root == "AlwaysOnSampler":
        bound = 1 << 64
    elif root == "AlwaysOffSampler":
        bound = 0
    else:
        rated = _RATE.fullmatch(root)
        if rated is None:  # a rate written otherwise (a fraction, say): asked each time
            return None
        bound = TraceIdRatioBased.get_bound_for_rate(float(rated.group(1)))
    empty = Context()
    for trace_id in _edges(bound):
        kept = trace_id & _LOW < bound
        try:
            result = sampler.should_sample(empty, trace_id, "", SpanKind.CLIENT)
        except Exception:  # a root taken at its word that fails here: asked each time, logged
            _log.warning("llmroute: sampler %s failed a probe; it is asked for each request",
                         described, exc_info=True)  # fmt: skip
            return None
        if result.decision.is_recording() != kept:
            return None
    return bound


def _edges(bound: int) -> list[int]:
    """Trace ids either side of `bound` (in their low 64 bits), and at the ends of the range."""
    edges = {1, _LOW, (1 << 128) - 1, 1 << 64}
    for low in (bound - 1, bound, bound + 1):
        if 0 <= low <= _LOW:
            edges.update((low or 1, (1 << 127) | low, (0xABCD << 64) | low))
    return sorted(edges)
