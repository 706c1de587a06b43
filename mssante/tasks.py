"""Background tasks of services: a periodic job's loop, and its end within the grace period."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from mssante.clock import Clock

__all__ = ["finish_within", "run_every"]


async def finish_within(task: asyncio.Task[None] | None, grace: float) -> None:
    """Let ``task`` end by itself for ``grace`` seconds (it was told to stop), then cancel it.

    The wait is shielded so a cancelled shutdown does not cancel the task
    half-way through a transaction it could have finished.
    """
    if task is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=grace)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_every(
    run: Callable[[], Awaitable[object]],
    *,
    clock: Clock,
    every: float,
    stopping: asyncio.Event,
    log: logging.Logger,
    what: str,
) -> None:
    """Call ``run`` now and then every ``every`` seconds of ``clock`` until ``stopping`` is set.

    A failed run is logged and the next one happens on schedule: periodic jobs
    (retention, DMP timers) leave what they did not finish due for next time.
    """
    while not stopping.is_set():
        try:
            await run()
        except Exception:
            log.exception("%s run failed; trying again at the next interval", what)
        sleeper = asyncio.ensure_future(clock.sleep(every))
        stopped = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({sleeper, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopped.cancel()
