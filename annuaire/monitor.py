"""Watches the trust space from inside `serve`: metrics, and news of a new list.

Lookups always read the list in force from the database, so a newly imported
list applies at once without a restart; this service only reports: the
generation in force, its age and its DateDeGeneration as metrics, a log line
when a new generation takes over, and a warning at start (and at every
check) when there is no list or only a domain-only one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from annuaire import trust
from mssante.clock import Clock
from mssante.db import Database
from mssante.metrics import Metrics

log = logging.getLogger("mssante.whitelist")


class WhitelistMonitor:
    name = "whitelist"

    def __init__(self, db: Database, clock: Clock, metrics: Metrics, *, every: float) -> None:
        self._db = db
        self._clock = clock
        self._every = every
        self._task: asyncio.Task[None] | None = None
        self._current = -1  # generation id last reported (0: none; -1: not checked yet)
        self._generation = metrics.gauge(
            "mssante_whitelist_generation", "Id of the whitelist generation in force (0: none)."
        )
        self._entries = metrics.gauge("mssante_whitelist_entries", "(domain, DN) pairs in force.")
        self._generated = metrics.gauge(
            "mssante_whitelist_generated_timestamp_seconds",
            "DateDeGeneration of the list in force (Unix time).",
        )
        self._age = metrics.gauge(
            "mssante_whitelist_age_seconds", "Seconds since the list in force was imported."
        )

    def describe(self) -> str:
        return f"whitelist monitor (every {self._every:g}s)"

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self._clock.sleep(self._every)
            try:
                await self.check()
            except Exception:
                log.exception("whitelist check failed")

    async def check(self) -> None:
        def read() -> trust.Generation | None:
            with self._db.read() as conn:
                return trust.active_generation(conn)

        generation = await asyncio.to_thread(read)
        if generation is None:
            self._generation.set(0)
            self._entries.set(0)
            if self._current != 0:
                log.warning("no whitelist imported: the trust space is empty, nothing is relayed")
            self._current = 0
            return
        self._generation.set(generation.id)
        self._entries.set(generation.entry_count)
        if generation.generated_at is not None:
            self._generated.set(generation.generated_at.timestamp())
        self._age.set((self._clock.now() - generation.imported_at).total_seconds())
        if generation.id != self._current:
            fields = {
                "generation": generation.id,
                "entries": generation.entry_count,
                "domains": generation.domain_count,
                "truncated_file": generation.truncated,
            }
            log.info("whitelist in force", extra={"fields": fields})
            if generation.domain_only:
                log.warning(
                    "the trust space is domain-only (a private lab list): peers' certificate "
                    "DNs are not paired with their domains"
                )
            self._current = generation.id

    async def stop(self, grace: float) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
