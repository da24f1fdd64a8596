"""A few worker threads for the image store (hashing beside write(2), zstd frames in parallel).

Not concurrent.futures: it imports logging and costs ~5 ms at every torpor start that writes
pages. Jobs are functions whose C code releases the GIL (xxh3, zstd, write)."""

from __future__ import annotations

import threading
from queue import SimpleQueue

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Job:
    __slots__ = ("_done", "_value", "_error")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def result(self) -> Any:
        """Wait for the job; its value, or its exception raised here."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


class Workers:
    def __init__(self, count: int, name: str) -> None:
        self._queue: SimpleQueue = SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
                         for i in range(count)]
        for t in self._threads:
            t.start()

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, fn, args = item
            try:
                job._value = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the waiter by result()
                job._error = e
            job._done.set()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Job:
        job = Job()
        self._queue.put((job, fn, args))
        return job

    def shutdown(self, wait: bool = True) -> None:
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join()
