"""Ending a service's background task within the shutdown grace period."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["finish_within"]


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
