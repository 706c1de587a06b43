import asyncio
from datetime import timedelta

import pytest

from mssante.clock import FakeClock, SystemClock


async def test_fake_clock_wakes_sleepers_only_when_advanced_past_their_deadline():
    clock = FakeClock()
    start = clock.now()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("a", 10)), asyncio.create_task(sleeper("b", 60))]
    await asyncio.sleep(0)
    clock.advance(9)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(timedelta(seconds=1))
    await asyncio.sleep(0)
    assert woke == ["a"]
    clock.advance(100)
    await asyncio.gather(*tasks)
    assert woke == ["a", "b"]
    assert clock.now() - start == timedelta(seconds=110)
    assert clock.monotonic() == 110


def test_fake_clock_never_goes_backwards():
    with pytest.raises(ValueError):
        FakeClock().advance(-1)


def test_system_clock_is_aware_utc():
    now = SystemClock().now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
