"""Per-target health: a circuit breaker over a rolling error ratio, and Retry-After cooldowns.

Pure decisions over an injected time (`now`, seconds on the event loop's
clock): nothing here sleeps or sends. The attempt driver asks `admit()` before
each attempt and reports the outcome with `succeeded()` / `failed()`.

A target's circuit is

- ``closed``: traffic flows; outcomes fill a rolling window of `window`
  seconds (ten buckets). When the window holds at least `min_requests`
  outcomes and the share of failures reaches `error_threshold`, it opens.
- ``open``: no traffic until the cooldown ends. The cooldown starts at
  `cooldown` and doubles each time the circuit re-opens, up to `max_cooldown`.
- ``half_open``: at most `half_open_probes` requests at once are let through
  as probes. A probe's success closes the circuit (and clears the window); a
  failure re-opens it with the longer cooldown.

Independently, a target that answered 429 with a delay (or reported zero
requests remaining until a reset) is cooling down until then: no request is
sent to it. A later, longer deadline replaces an earlier, shorter one, never
the reverse, and no cooldown is longer than `max_retry_after`.

With shared state (`llmroute.stores.shared_state`), the tracker stays the source of
every decision: it tells its `listener` when a circuit opens or closes and when
a cooldown is extended (never for an outcome that changes nothing, so a healthy
target's requests cost no more), and `merge` takes in what other routers did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .._config import HealthConfig

__all__ = ["Admission", "CircuitState", "HealthChange", "HealthTracker", "TargetHealth"]

CircuitState = Literal["closed", "open", "half_open"]
_BUCKETS = 10


@dataclass(slots=True, frozen=True)
class TargetHealth:
    """A snapshot of one target's health, as `router.health()` reports it.

    Attributes:
        state: the circuit state.
        error_ratio: failures / outcomes in the rolling window (0 when empty).
        requests: outcomes in the rolling window.
        open_until: when an open circuit half-opens (loop-clock seconds), else None.
        cooldown_until: when a Retry-After cooldown ends, else None.
        cooldown_remaining_s: seconds until the target takes traffic again (0 if it does).
        last_error: the last error's type and message, if any.
    """

    state: CircuitState
    error_ratio: float
    requests: int
    open_until: float | None
    cooldown_until: float | None
    cooldown_remaining_s: float
    last_error: str | None


@dataclass(slots=True, frozen=True)
class Admission:
    """Permission to send one attempt; `probe` when the circuit is half-open.

    `generation` is the circuit's opening it was admitted under: a probe from
    an earlier half-open period says nothing about the current one.
    """

    state: CircuitState
    probe: bool
    generation: int = 0


#: A closed circuit's admission: every attempt to a healthy target gets this one (it is
#: frozen and holds nothing of the attempt). Building a frozen dataclass per attempt cost
#: ~6.7k instructions (its `__init__` sets each field through `object.__setattr__`);
#: llmroute's own work per chat request 241.4k -> 234.8k (callgrind, 2026-12-03).
_CLOSED = Admission("closed", probe=False)


@dataclass(slots=True, frozen=True)
class HealthChange:
    """What one target's circuit and cooldown are, to share with other routers.

    Times are seconds on the tracker's clock (the event loop's); ``-inf`` means never.
    The later of two values wins when changes are merged, so a change can be applied
    twice, late, or out of order.

    Attributes:
        key: the target (``provider/model``).
        open_until: when the target's latest circuit opening ends.
        opens: how many times in a row it has opened (its cooldown doubles with each).
        closed_at: when a probe's success last closed the circuit.
        cooldown_until: when its Retry-After (or rate-limit reset) cooldown ends.
        error: the error that caused the change, if any.
    """

    key: str
    open_until: float
    opens: int
    closed_at: float
    cooldown_until: float
    error: str | None = None


_NEVER = float("-inf")


class _Window:
    """Success and failure counts over the last `span` seconds, in fixed buckets."""

    __slots__ = ("_failures", "_span", "_starts", "_successes", "_width")

    def __init__(self, span: float) -> None:
        self._span = span
        self._width = span / _BUCKETS
        self._starts = [float("-inf")] * _BUCKETS
        self._successes = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS

    def add(self, now: float, ok: bool) -> None:
        width = self._width
        slot = now // width
        index = int(slot) % _BUCKETS
        start = slot * width
        if self._starts[index] != start:  # the bucket's time has come round again
            self._starts[index] = start
            self._successes[index] = 0
            self._failures[index] = 0
        if ok:
            self._successes[index] += 1
        else:
            self._failures[index] += 1

    def counts(self, now: float) -> tuple[int, int]:
        """(requests, failures) within the window ending at `now`."""
        oldest = now - self._span
        requests = failures = 0
        for i in range(_BUCKETS):
            if self._starts[i] > oldest:
                requests += self._successes[i] + self._failures[i]
                failures += self._failures[i]
        return requests, failures

    def clear(self) -> None:
        self._starts = [float("-inf")] * _BUCKETS


class _TargetHealthState:
    """One target's circuit, its rolling window and its Retry-After cooldown."""

    __slots__ = (
        "closed_at",
        "cooldown_until",
        "elsewhere_until",
        "epoch",
        "last_error",
        "open_until",
        "opens",
        "probes",
        "state",
        "window",
    )

    def __init__(self, span: float) -> None:
        self.state: CircuitState = "closed"
        self.window = _Window(span)
        self.open_until = _NEVER
        self.closed_at = _NEVER
        self.elsewhere_until = _NEVER  # another router's half-open probe holds the lease
        self.opens = 0
        self.probes = 0
        self.cooldown_until = 0.0
        self.last_error: str | None = None
        self.epoch = 0  # every opening starts a new one


class HealthTracker:
    """The health of every target of one router, keyed by ``provider/model``."""

    def __init__(self, config: HealthConfig) -> None:
        self.config = config
        self._targets: dict[str, _TargetHealthState] = {}
        #: Told of every change worth sharing (an opening, a close, a longer cooldown).
        self.listener: Callable[[HealthChange], None] | None = None

    def _get(self, key: str) -> _TargetHealthState:
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = _TargetHealthState(self.config.window)
        return target

    def forget(self, key: str) -> None:
        """Drop `key`'s health (its catalog forgot it; call only with no attempt under way)."""
        self._targets.pop(key, None)

    def _refresh(self, target: _TargetHealthState, now: float) -> None:
        if target.state == "open" and now >= target.open_until:
            target.state = "half_open"
            target.probes = 0

    # -------------------------------------------------------------- decisions

    def available_at(self, key: str, now: float) -> float:
        """When `key` can take a request: `now` if it can now, else the earliest later time."""
        target = self._targets.get(key)
        if target is None:
            return now
        if target.state == "closed":  # most calls: nothing to refresh, no probe to wait for
            cooldown = target.cooldown_until
            return now if now >= cooldown else cooldown
        self._refresh(target, now)
        ready = max(now, target.cooldown_until)
        if target.state == "open":
            ready = max(ready, target.open_until)
        elif target.state == "half_open" and (
            target.probes >= self.config.half_open_probes or now < target.elsewhere_until
        ):
            # a probe is in flight; the earliest news is when it ends: poll shortly
            soon = now + min(self.config.cooldown, 1.0)
            if target.probes < self.config.half_open_probes:
                soon = min(soon, target.elsewhere_until)  # another router's, leased until then
            ready = max(ready, soon)
        return ready

    def state(self, key: str, now: float) -> CircuitState:
        """The circuit state of `key` at `now`."""
        target = self._targets.get(key)
        if target is None:
            return "closed"
        self._refresh(target, now)
        return target.state

    def admit(self, key: str, now: float) -> Admission | None:
        """Let one attempt go to `key`, or None when its circuit or a cooldown forbids it."""
        target = self._targets.get(key) or self._get(key)
        if target.state == "open":
            self._refresh(target, now)
        if now < target.cooldown_until or target.state == "open":
            return None
        if target.state == "half_open":
            if target.probes >= self.config.half_open_probes or now < target.elsewhere_until:
                return None
            target.probes += 1
            return Admission("half_open", probe=True, generation=target.epoch)
        return _CLOSED

    # -------------------------------------------------------------- outcomes

    def succeeded(self, key: str, now: float, admission: Admission) -> None:
        """An attempt admitted by `admission` succeeded."""
        target = self._targets.get(key) or self._get(key)
        if admission.probe:
            if admission.generation != target.epoch:
                return  # a stale probe: the circuit has re-opened since
            target.probes = max(0, target.probes - 1)
            if target.state == "half_open":
                target.state = "closed"
                target.opens = 0
                target.window.clear()
                target.closed_at = now
                self._changed(key, target, None)
        target.window.add(now, True)

    def failed(self, key: str, now: float, admission: Admission, error: str) -> None:
        """An attempt admitted by `admission` failed in a way that counts against health."""
        target = self._get(key)
        target.last_error = error
        if admission.probe:
            if admission.generation != target.epoch:
                return  # a stale probe: the circuit has re-opened since
            target.probes = max(0, target.probes - 1)
            if target.state == "half_open":
                self._open(key, target, now)
            return
        target.window.add(now, False)
        if target.state != "closed":
            return
        requests, failures = target.window.counts(now)
        config = self.config
        if requests >= config.min_requests and failures >= config.error_threshold * requests:
            self._open(key, target, now)

    def released(self, key: str, admission: Admission) -> None:
        """An admitted attempt ended without an outcome that says anything (cancelled)."""
        if admission.probe:
            target = self._get(key)
            if admission.generation == target.epoch:
                target.probes = max(0, target.probes - 1)

    def _open(self, key: str, target: _TargetHealthState, now: float) -> None:
        config = self.config
        target.opens += 1
        target.epoch += 1
        cooldown = min(config.cooldown * 2 ** (target.opens - 1), config.max_cooldown)
        target.state = "open"
        target.open_until = now + cooldown
        target.probes = 0
        target.elsewhere_until = _NEVER
        self._changed(key, target, target.last_error)

    def cool_down(self, key: str, now: float, seconds: float, reason: str) -> None:
        """Send `key` no traffic for `seconds` (capped); a shorter deadline never wins."""
        target = self._get(key)
        until = now + min(max(seconds, 0.0), self.config.max_retry_after)
        target.last_error = reason
        if until > target.cooldown_until:
            target.cooldown_until = until
            self._changed(key, target, reason)

    # -------------------------------------------------------------- sharing

    def _changed(self, key: str, target: _TargetHealthState, error: str | None) -> None:
        listener = self.listener
        if listener is not None:
            listener(
                HealthChange(
                    key, target.open_until, target.opens, target.closed_at,
                    target.cooldown_until, error,
                )
            )  # fmt: skip

    def merge(self, change: HealthChange, now: float) -> bool:
        """Take in another router's `change` (times on this tracker's clock); the later of
        each value wins, capped as this tracker would cap its own. Whether anything changed.

        A later opening opens the circuit here too (it half-opens when its time has come);
        a close later than every opening closes it. Probes in flight here become stale.
        The listener is not told: the change came from where it would be told to.
        """
        target = self._get(change.key)
        config = self.config
        moved = False
        cooldown = min(change.cooldown_until, now + config.max_retry_after)
        if cooldown > target.cooldown_until and cooldown > now:
            target.cooldown_until = cooldown
            moved = True
        opened = min(change.open_until, now + config.max_cooldown)
        if opened > target.open_until and opened > target.closed_at:
            target.open_until = opened
            target.opens = max(target.opens, change.opens)
            target.state = "open"  # `_refresh` half-opens it when the time has come
            target.epoch += 1
            target.probes = 0
            target.elsewhere_until = _NEVER
            moved = True
        if change.closed_at > target.closed_at and change.closed_at >= target.open_until:
            target.closed_at = change.closed_at
            if target.state != "closed":
                target.state = "closed"
                target.opens = 0
                target.window.clear()
                target.epoch += 1
                target.probes = 0
                moved = True
        if moved and change.error:
            target.last_error = change.error
        return moved

    def probing_elsewhere(self, key: str, until: float) -> None:
        """Another router holds `key`'s half-open probe lease until `until`: send no probe
        from here before then (its outcome, merged, closes or re-opens the circuit)."""
        target = self._get(key)
        target.elsewhere_until = max(target.elsewhere_until, until)

    # -------------------------------------------------------------- reporting

    def snapshot(self, key: str, now: float) -> TargetHealth:
        """`key`'s health at `now`."""
        target = self._targets.get(key)
        if target is None:
            return TargetHealth("closed", 0.0, 0, None, None, 0.0, None)
        self._refresh(target, now)
        requests, failures = target.window.counts(now)
        cooling = target.cooldown_until if target.cooldown_until > now else None
        return TargetHealth(
            state=target.state,
            error_ratio=failures / requests if requests else 0.0,
            requests=requests,
            open_until=target.open_until if target.state == "open" else None,
            cooldown_until=cooling,
            cooldown_remaining_s=max(0.0, self.available_at(key, now) - now),
            last_error=target.last_error,
        )
