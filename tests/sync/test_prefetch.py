"""The fetch-ahead thread: order, errors where they belong, bounded lookahead, clean stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from bot.sync.prefetch import prefetch


class Source:
    """A generator-like source that records how far it has been pulled and by which thread."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.produced = 0
        self.closed = False
        self.threads: set[str] = set()

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        self.threads.add(threading.current_thread().name)
        if self.produced == self.fail_at:
            raise ValueError(f"broken at {self.produced}")
        if self.produced >= self.n:
            raise StopIteration
        self.produced += 1
        return self.produced - 1

    def close(self) -> None:
        self.closed = True


def _wait_until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def test_items_arrive_in_order_from_another_thread() -> None:
    src = Source(50)
    assert list(prefetch(src, name="t-order")) == list(range(50))
    assert src.threads == {"t-order"}  # the source ran in the fetch thread, not here
    assert src.closed


def test_the_source_error_is_raised_where_its_item_would_have_come() -> None:
    got: list[int] = []
    with pytest.raises(ValueError, match="broken at 3"):
        for item in prefetch(Source(10, fail_at=3)):
            got.append(item)
    assert got == [0, 1, 2]  # everything before the failure was delivered


def test_lookahead_is_bounded() -> None:
    src = Source(1000)
    gen = prefetch(src, ahead=2)
    assert next(gen) == 0
    _wait_until(lambda: src.produced >= 4)
    time.sleep(0.2)  # give an unbounded producer time to run away
    # One handed out, two queued, one pulled and waiting for room: never more.
    assert src.produced <= 4
    gen.close()


def test_stopping_early_stops_the_thread_and_closes_the_source() -> None:
    src = Source(1000)
    before = threading.active_count()
    for item in prefetch(src, name="t-stop"):
        if item == 5:
            break
    # The loop's generator is closed when it is dropped; the thread is joined in close().
    _wait_until(lambda: src.closed)
    assert src.closed
    assert src.produced < 1000
    assert not any(t.name == "t-stop" for t in threading.enumerate())
    assert threading.active_count() <= before


def test_an_error_in_the_consumer_stops_the_producer() -> None:
    src = Source(1000)
    gen = prefetch(src, name="t-consumer-error")
    with pytest.raises(RuntimeError):
        for item in gen:
            if item == 2:
                raise RuntimeError("store failed")
    gen.close()
    assert src.closed and src.produced < 1000
    assert not any(t.name == "t-consumer-error" for t in threading.enumerate())
