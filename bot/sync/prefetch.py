"""Run an iterator in a background thread, a bounded number of items ahead of its consumer.

The sync engine fetches batch N+1 from IMAP while it stores batch N. The two overlap even
under the GIL because most of each is spent outside it: the socket reads of the fetch, and
SQLite's or psycopg's C code in the store. At most ``ahead`` items wait in the queue, so
memory stays bounded however large the mailbox.

The consumer sees the source's items in order and the source's exception, if it raises, at
the point where the item would have come. Closing the returned generator (a `break`, an
exception in the consumer, garbage collection) stops the source thread and waits for it, so
nothing is still using the source's connection once the generator is closed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

T = TypeVar("T")

_POLL_SECONDS = 0.2  # how often a blocked producer looks at the stop flag


class _End:
    pass


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(source: Iterator[T], *, ahead: int = 1, name: str = "prefetch") -> Generator[T]:
    items: queue.Queue[T | _End | _Failed] = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def put(item: T | _End | _Failed) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failed(exc))
            return
        put(_End())

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            got = items.get()
            if isinstance(got, _End):
                return
            if isinstance(got, _Failed):
                raise got.exc
            yield got
    finally:
        stop.set()
        thread.join()
        close = getattr(source, "close", None)
        if close is not None:
            close()
