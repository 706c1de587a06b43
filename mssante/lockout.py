"""Slow down, then lock out, repeated authentication failures (SMTP AUTH and IMAP).

Password guessing is bounded two ways: per account (case-folded), so one
mailbox cannot be brute-forced from many addresses, and per client address,
so one client cannot spray many mailboxes. Each failure of an account adds a
delay before its next attempt is checked (0, 1, 2, 4 … seconds, capped); too
many failures within the window lock the account or the client for a while.
An IPv6 client counts per /64 (``ipv6_prefix``): one host holds a whole
prefix. A success clears the account's count but not the client's, so a
sprayer cannot launder its failures with one good password.

A lock is also a denial-of-service lever (anyone can lock a mailbox by
failing on purpose); the lockout is therefore short and the caller should
keep certificate (EXTERNAL) access outside this throttle.

The state is in memory, per node, and bounded (``max_entries``, least
recently failed evicted first): with several nodes each counts alone, so an
attacker gets one budget per node. A shared store for multi-node
deployments is a later step; the interface will stay the same. Time comes
from the injected clock's monotonic reading. Not thread-safe: call it from
the event loop.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from mssante.clock import Clock

__all__ = ["FailureThrottle", "ThrottleSettings", "Verdict"]


@dataclass(frozen=True)
class ThrottleSettings:
    """Limits of :class:`FailureThrottle`; times in seconds."""

    max_failures_account: int = 10
    max_failures_client: int = 30
    window_seconds: float = 900.0
    lockout_seconds: float = 900.0
    base_delay: float = 1.0
    max_delay: float = 8.0
    max_entries: int = 100_000
    ipv6_prefix: int = 64

    def __post_init__(self) -> None:
        if min(self.max_failures_account, self.max_failures_client, self.max_entries) < 1:
            raise ValueError("failure limits and max_entries must be at least 1")
        if min(self.window_seconds, self.lockout_seconds) <= 0:
            raise ValueError("window_seconds and lockout_seconds must be positive")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays cannot be negative")
        if not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be within 0..128")


@dataclass(frozen=True)
class Verdict:
    """Whether to check the credentials at all, after how long a pause, and why not.

    ``reason`` ("account locked", "client locked") is for logs; the client
    should get the same answer as for wrong credentials.
    """

    allowed: bool
    delay_seconds: float
    reason: str | None


@dataclass
class _Entry:
    failures: deque[float] = field(default_factory=deque)  # monotonic times, oldest first
    locked_until: float = 0.0


class FailureThrottle:
    """Counts failures per account and per client; see the module docstring."""

    def __init__(self, clock: Clock, settings: ThrottleSettings | None = None) -> None:
        self._clock = clock
        self.settings = settings or ThrottleSettings()
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        """Tracked keys (accounts plus clients), for metrics and tests."""
        return len(self._entries)

    def check(self, account: str, client: str) -> Verdict:
        """Call before verifying credentials; honour ``delay_seconds`` then verify if allowed."""
        now = self._clock.monotonic()
        client_entry = self._current(self._client_key(client), now)
        if client_entry is not None and client_entry.locked_until > now:
            return Verdict(False, 0.0, "client locked")
        account_entry = self._current(self._account_key(account), now)
        if account_entry is not None and account_entry.locked_until > now:
            return Verdict(False, 0.0, "account locked")
        failures = len(account_entry.failures) if account_entry is not None else 0
        return Verdict(True, self._delay(failures), None)

    def failed(self, account: str, client: str) -> None:
        """Record wrong credentials for ``account`` from ``client``."""
        now = self._clock.monotonic()
        self._fail(self._account_key(account), self.settings.max_failures_account, now)
        self._fail(self._client_key(client), self.settings.max_failures_client, now)

    def succeeded(self, account: str, client: str) -> None:
        """Clear the account's failures; the client's count stands."""
        key = self._account_key(account)
        entry = self._current(key, self._clock.monotonic())
        if entry is None:
            return
        if entry.locked_until > self._clock.monotonic():
            entry.failures.clear()  # a success cannot lift a lock the caller ignored
        else:
            del self._entries[key]

    # -- internals --

    def _delay(self, failures: int) -> float:
        if failures == 0:
            return 0.0
        return min(self.settings.max_delay, self.settings.base_delay * 2.0 ** min(failures - 1, 60))

    @staticmethod
    def _account_key(account: str) -> tuple[str, str]:
        return ("account", account.casefold())

    def _client_key(self, client: str) -> tuple[str, str]:
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return ("client", client)
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return ("client", str(address.ipv4_mapped))
            network = ipaddress.IPv6Network((int(address), self.settings.ipv6_prefix), strict=False)
            return ("client", str(network))
        return ("client", str(address))

    def _current(self, key: tuple[str, str], now: float) -> _Entry | None:
        """The entry with old failures and an expired lock dropped; None if nothing is left."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.locked_until and entry.locked_until <= now:
            entry.locked_until = 0.0
            entry.failures.clear()
        horizon = now - self.settings.window_seconds
        while entry.failures and entry.failures[0] <= horizon:
            entry.failures.popleft()
        if not entry.failures and not entry.locked_until:
            del self._entries[key]
            return None
        return entry

    def _fail(self, key: tuple[str, str], limit: int, now: float) -> None:
        entry = self._current(key, now)
        if entry is None:
            entry = self._entries[key] = _Entry()
        elif entry.locked_until > now:
            return  # already locked: more failures do not extend the lock
        self._entries.move_to_end(key)
        entry.failures.append(now)
        if len(entry.failures) >= limit:
            entry.locked_until = now + self.settings.lockout_seconds
            entry.failures.clear()
        while len(self._entries) > self.settings.max_entries:
            self._entries.popitem(last=False)
