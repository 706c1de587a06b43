# covers: TS-4
"""Failure throttling: growing delays, account and client lock-outs, bounded memory; no sleeps."""

from __future__ import annotations

import pytest

from mssante.clock import FakeClock
from mssante.lockout import FailureThrottle, ThrottleSettings, Verdict

CLIENT = "192.0.2.10"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(clock: FakeClock) -> FailureThrottle:
    return FailureThrottle(clock)


def fail(throttle: FailureThrottle, times: int, account: str = "alice@h.fr", client: str = CLIENT):
    for _ in range(times):
        assert throttle.check(account, client).allowed
        throttle.failed(account, client)


def test_a_clean_account_passes_without_delay(throttle):
    assert throttle.check("alice@h.fr", CLIENT) == Verdict(True, 0.0, None)


def test_delay_doubles_per_failure_up_to_the_cap(throttle):
    delays = []
    for _ in range(9):
        delays.append(throttle.check("alice@h.fr", CLIENT).delay_seconds)
        throttle.failed("alice@h.fr", CLIENT)
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]


def test_account_locks_after_ten_failures_for_fifteen_minutes(throttle, clock):
    fail(throttle, 10)
    verdict = throttle.check("alice@h.fr", CLIENT)
    assert verdict == Verdict(False, 0.0, "account locked")
    assert throttle.check("ALICE@H.FR", "198.51.100.7").reason == "account locked"
    assert throttle.check("bob@h.fr", CLIENT).allowed  # the client itself is not locked
    clock.advance(899)
    assert not throttle.check("alice@h.fr", CLIENT).allowed
    clock.advance(1)
    assert throttle.check("alice@h.fr", CLIENT) == Verdict(True, 0.0, None)


def test_failures_outside_the_window_are_forgotten(throttle, clock):
    fail(throttle, 9)
    clock.advance(900)
    assert throttle.check("alice@h.fr", CLIENT) == Verdict(True, 0.0, None)
    fail(throttle, 9)
    assert throttle.check("alice@h.fr", CLIENT).allowed


def test_the_window_slides(throttle, clock):
    fail(throttle, 5)
    clock.advance(600)
    fail(throttle, 4)
    clock.advance(301)  # the first five are now older than the window
    fail(throttle, 5)
    assert throttle.check("alice@h.fr", CLIENT).allowed


def test_account_keys_are_case_folded(throttle):
    fail(throttle, 5, account="Alice@H.fr")
    fail(throttle, 5, account="ALICE@h.FR")
    assert throttle.check("alice@h.fr", CLIENT).reason == "account locked"
    assert throttle.check("Straße@h.fr", CLIENT).allowed
    fail(throttle, 10, account="STRASSE@h.fr", client="203.0.113.1")
    assert throttle.check("straße@h.fr", CLIENT).reason == "account locked"


def test_success_resets_the_account_but_not_the_client(throttle):
    fail(throttle, 3)
    throttle.succeeded("Alice@h.fr", CLIENT)
    assert throttle.check("alice@h.fr", CLIENT) == Verdict(True, 0.0, None)
    # 30 failures per client: a sprayer cannot launder them with one good password.
    for i in range(27):  # 3 + 27 = 30
        fail(throttle, 1, account=f"user{i}@h.fr")
        throttle.succeeded("mine@h.fr", CLIENT)
    assert throttle.check("anyone@h.fr", CLIENT) == Verdict(False, 0.0, "client locked")
    assert throttle.check("anyone@h.fr", "192.0.2.11").allowed


def test_client_lock_expires(throttle, clock):
    for i in range(30):
        fail(throttle, 1, account=f"user{i}@h.fr")
    assert throttle.check("x@h.fr", CLIENT).reason == "client locked"
    clock.advance(900)
    assert throttle.check("x@h.fr", CLIENT).allowed


def test_ipv6_clients_count_per_prefix(clock):
    throttle = FailureThrottle(clock, ThrottleSettings(max_failures_client=3))
    for n, address in enumerate(("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:f:1:2:3")):
        throttle.failed(f"u{n}@h.fr", address)
    assert throttle.check("x@h.fr", "2001:db8:1:2:aaaa::1").reason == "client locked"
    assert throttle.check("x@h.fr", "2001:db8:1:3::1").allowed
    for n in range(3):
        throttle.failed(f"v{n}@h.fr", "::ffff:192.0.2.99")
    assert throttle.check("x@h.fr", "192.0.2.99").reason == "client locked"
    for n in range(3):
        throttle.failed(f"w{n}@h.fr", "not-an-address")
    assert throttle.check("x@h.fr", "not-an-address").reason == "client locked"


def test_failures_while_locked_do_not_extend_the_lock(throttle, clock):
    fail(throttle, 10)
    clock.advance(800)
    throttle.failed("alice@h.fr", CLIENT)  # a caller that ignored the verdict
    throttle.succeeded("alice@h.fr", CLIENT)  # nor does a success lift it
    assert not throttle.check("alice@h.fr", CLIENT).allowed
    clock.advance(100)
    assert throttle.check("alice@h.fr", CLIENT).allowed


def test_memory_is_bounded_and_the_oldest_entries_go_first(clock):
    throttle = FailureThrottle(clock, ThrottleSettings(max_entries=100, max_failures_account=2))
    throttle.failed("victim@h.fr", "198.51.100.1")
    throttle.failed("victim@h.fr", "198.51.100.1")
    assert throttle.check("victim@h.fr", CLIENT).reason == "account locked"
    for i in range(200):
        throttle.failed(f"user{i}@h.fr", f"203.0.113.{i % 250}")
        assert len(throttle) <= 100
    assert throttle.check("victim@h.fr", CLIENT).allowed  # evicted
    assert throttle.check("user199@h.fr", CLIENT).delay_seconds == 1.0  # recent, kept


def test_expired_entries_are_dropped(throttle, clock):
    fail(throttle, 3)
    assert len(throttle) == 2
    clock.advance(901)
    throttle.check("alice@h.fr", CLIENT)
    assert len(throttle) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failures_account": 0},
        {"max_entries": 0},
        {"window_seconds": 0},
        {"lockout_seconds": -1},
        {"max_delay": -1},
        {"ipv6_prefix": 129},
    ],
)
def test_settings_are_validated(kwargs):
    with pytest.raises(ValueError):
        ThrottleSettings(**kwargs)


def test_huge_failure_limits_do_not_overflow_the_delay(clock):
    throttle = FailureThrottle(
        clock, ThrottleSettings(max_failures_account=5000, max_failures_client=5000, max_delay=30)
    )
    fail(throttle, 2000)
    assert throttle.check("alice@h.fr", "198.51.100.2").delay_seconds == 30
