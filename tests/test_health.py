"""HealthTracker: the circuit breaker and Retry-After cooldowns, as pure decisions over time."""

from __future__ import annotations

import pytest

from llmroute import HealthConfig
from llmroute.routing.health import HealthChange, HealthTracker

KEY = "p/m"
NEVER = float("-inf")


def tracker(**config: float) -> HealthTracker:
    defaults = {"window": 10, "min_requests": 4, "error_threshold": 0.5, "cooldown": 5,
                "max_cooldown": 12, "half_open_probes": 1, "max_retry_after": 60}  # fmt: skip
    return HealthTracker(HealthConfig.model_validate({**defaults, **config}))


def fail(health: HealthTracker, now: float, times: int = 1) -> None:
    for _ in range(times):
        admission = health.admit(KEY, now)
        assert admission is not None
        health.failed(KEY, now, admission, "ProviderUnavailable: 503")


def succeed(health: HealthTracker, now: float, times: int = 1) -> None:
    for _ in range(times):
        admission = health.admit(KEY, now)
        assert admission is not None
        health.succeeded(KEY, now, admission)


def test_circuit_stays_closed_below_min_requests() -> None:
    health = tracker()
    fail(health, 0.0, 3)
    assert health.state(KEY, 0.0) == "closed"
    assert health.snapshot(KEY, 0.0).error_ratio == 1.0


def test_circuit_opens_at_the_threshold_and_half_opens_after_cooldown() -> None:
    health = tracker()
    succeed(health, 0.0, 2)
    fail(health, 1.0, 1)
    assert health.state(KEY, 1.0) == "closed"  # 1/3, and fewer than 4 outcomes
    fail(health, 1.0, 1)  # 2 of 4 = 0.5: opens
    assert health.state(KEY, 1.0) == "open"
    assert health.admit(KEY, 5.9) is None
    assert health.available_at(KEY, 2.0) == pytest.approx(6.0)
    assert health.state(KEY, 6.0) == "half_open"


def test_half_open_lets_limited_probes_and_success_closes() -> None:
    health = tracker()
    fail(health, 0.0, 4)
    probe = health.admit(KEY, 5.0)
    assert probe is not None
    assert probe.probe
    assert health.admit(KEY, 5.0) is None  # one probe at a time
    health.succeeded(KEY, 5.1, probe)
    assert health.state(KEY, 5.1) == "closed"
    assert health.snapshot(KEY, 5.1).requests == 1  # the window was cleared on recovery


def test_failed_probe_reopens_with_a_longer_bounded_cooldown() -> None:
    health = tracker()
    fail(health, 0.0, 4)  # open until 5
    probe = health.admit(KEY, 5.0)
    assert probe is not None
    health.failed(KEY, 5.0, probe, "boom")
    assert health.available_at(KEY, 5.0) == pytest.approx(15.0)  # 10 s: doubled
    probe = health.admit(KEY, 15.0)
    assert probe is not None
    health.failed(KEY, 15.0, probe, "boom")
    assert health.available_at(KEY, 15.0) == pytest.approx(27.0)  # capped at max_cooldown 12
    assert health.snapshot(KEY, 15.0).last_error == "boom"


def test_cancelled_probe_frees_its_slot() -> None:
    health = tracker()
    fail(health, 0.0, 4)
    probe = health.admit(KEY, 5.0)
    assert probe is not None
    health.released(KEY, probe)
    assert health.admit(KEY, 5.0) is not None


def test_old_failures_leave_the_window() -> None:
    health = tracker()
    fail(health, 0.0, 3)
    succeed(health, 11.0, 1)  # the failures at t=0 are out of the 10 s window
    fail(health, 11.0, 1)
    assert health.state(KEY, 11.0) == "closed"
    assert health.snapshot(KEY, 11.0).requests == 2


def test_cooldown_longer_deadline_wins_and_is_capped() -> None:
    health = tracker(max_retry_after=30)
    health.cool_down(KEY, 0.0, 10, "429")
    health.cool_down(KEY, 1.0, 2, "429 again")  # would end at 3: the later 10 stays
    assert health.available_at(KEY, 1.0) == pytest.approx(10.0)
    health.cool_down(KEY, 2.0, 20, "longer")  # ends at 22: replaces
    assert health.available_at(KEY, 2.0) == pytest.approx(22.0)
    health.cool_down(KEY, 3.0, 3600, "huge")  # capped at 30 s
    assert health.available_at(KEY, 3.0) == pytest.approx(33.0)
    assert health.admit(KEY, 32.9) is None
    assert health.admit(KEY, 33.0) is not None
    snap = health.snapshot(KEY, 4.0)
    assert snap.cooldown_remaining_s == pytest.approx(29.0)
    assert snap.state == "closed"  # a rate limit is not a fault


def test_unknown_target_is_healthy() -> None:
    snap = tracker().snapshot("x/y", 100.0)
    assert (snap.state, snap.error_ratio, snap.cooldown_until) == ("closed", 0.0, None)


def test_a_stale_probe_does_not_close_a_reopened_circuit() -> None:
    health = tracker(half_open_probes=2)
    fail(health, 0.0, 4)  # open until 5
    first = health.admit(KEY, 5.0)
    second = health.admit(KEY, 5.0)
    assert first is not None
    assert second is not None
    health.failed(KEY, 5.0, first, "boom")  # re-opens until 15
    newer = health.admit(KEY, 15.0)
    assert newer is not None
    health.succeeded(KEY, 15.1, second)  # from the earlier half-open period: ignored
    assert health.state(KEY, 15.1) == "half_open"
    health.succeeded(KEY, 15.2, newer)
    assert health.state(KEY, 15.2) == "closed"


# ---------------------------------------------------------------- shared with other routers


def test_the_listener_hears_openings_closes_and_longer_cooldowns_only() -> None:
    health = tracker()
    heard: list[HealthChange] = []
    health.listener = heard.append
    succeed(health, 0.0, 3)
    fail(health, 1.0, 3)  # 3 of 6 failed: the error ratio reaches 0.5
    assert [(c.key, c.open_until, c.opens) for c in heard] == [(KEY, 6.0, 1)]
    health.cool_down(KEY, 2.0, 10, "RateLimited: slow down")
    health.cool_down(KEY, 3.0, 1, "RateLimited: shorter")  # changes nothing: not heard
    assert [c.cooldown_until for c in heard[1:]] == [12.0]
    assert heard[1].error == "RateLimited: slow down"
    succeed(health, 12.0)  # the half-open probe closes it
    assert heard[-1].closed_at == 12.0 and heard[-1].open_until == 6.0
    count = len(heard)
    succeed(health, 13.0, 5)  # a healthy target's outcomes change nothing worth sharing
    assert len(heard) == count


def test_a_later_opening_from_elsewhere_opens_here_and_a_later_close_closes() -> None:
    health = tracker()
    change = HealthChange(KEY, open_until=8.0, opens=2, closed_at=NEVER, cooldown_until=NEVER,
                          error="ProviderUnavailable: elsewhere")  # fmt: skip
    assert health.merge(change, 1.0)
    assert health.state(KEY, 1.0) == "open" and health.available_at(KEY, 1.0) == 8.0
    assert health.snapshot(KEY, 1.0).last_error == "ProviderUnavailable: elsewhere"
    assert not health.merge(change, 2.0)  # the same change again: nothing moves
    fail(health, 8.5)  # the half-open probe fails here: the count goes on from 2
    assert health.available_at(KEY, 8.5) == 8.5 + 12  # min(5 * 2**2, max_cooldown 12)
    closed = HealthChange(KEY, 8.0, 2, closed_at=9.0, cooldown_until=NEVER)
    assert not health.merge(closed, 9.0)  # a close older than the opening here: ignored
    later = HealthChange(KEY, 8.0, 2, closed_at=21.0, cooldown_until=NEVER)
    assert health.merge(later, 21.0)
    assert health.state(KEY, 21.0) == "closed"
    fail(health, 22.0, 4)  # a fresh window and count: the first cooldown again
    assert health.available_at(KEY, 22.0) == 27.0


def test_a_cooldown_from_elsewhere_is_capped_and_the_later_wins() -> None:
    health = tracker(max_retry_after=30)
    assert health.merge(HealthChange(KEY, NEVER, 0, NEVER, cooldown_until=500.0), 0.0)
    assert health.available_at(KEY, 0.0) == 30.0
    assert not health.merge(HealthChange(KEY, NEVER, 0, NEVER, cooldown_until=20.0), 1.0)
    assert not health.merge(HealthChange(KEY, NEVER, 0, NEVER, cooldown_until=-5.0), 40.0)


def test_a_probe_leased_elsewhere_holds_probes_here_until_its_outcome() -> None:
    health = tracker()
    fail(health, 0.0, 4)
    assert health.state(KEY, 5.0) == "half_open"
    health.probing_elsewhere(KEY, 7.5)
    assert health.admit(KEY, 5.0) is None
    assert health.available_at(KEY, 5.0) == 6.0  # polls, but not past the lease's end
    assert health.available_at(KEY, 7.0) == 7.5
    probe = health.admit(KEY, 7.5)  # the lease ran out with no outcome: probe from here
    assert probe is not None and probe.probe
