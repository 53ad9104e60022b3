"""A background thread that keeps a bounded queue of ready batches (Caffe's prefetching).

``Prefetcher(produce, depth)`` calls ``produce()`` on its own thread and queues up to ``depth``
results; ``get()`` hands them out in order. An exception raised by ``produce`` is re-raised by
the ``get()`` that would have returned its batch. ``stop()`` ends the thread and throws away what
was queued, so the producer's state (cursor, RNG) can be rewound before ``start()`` again.
``depth=0`` produces synchronously inside ``get()`` (no thread).
"""
from __future__ import annotations

import queue
import threading

_POLL_S = 0.05


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc):
        self.exc = exc


class Prefetcher:
    def __init__(self, produce, depth: int = 4, name: str = "caffeish-prefetch"):
        self.produce = produce
        self.depth = int(depth)
        self.name = name
        self._queue: queue.Queue = queue.Queue(maxsize=max(self.depth, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self):
        if self.depth <= 0 or self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        stop = self._stop
        q = self._queue
        while not stop.is_set():
            try:
                item = self.produce()
            except BaseException as e:  # handed to the consumer, which re-raises it
                item = _Failure(e)
            while not stop.is_set():
                try:
                    q.put(item, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
            if isinstance(item, _Failure):
                return

    def get(self):
        """The next batch, in production order (blocks until it is ready)."""
        if self.depth <= 0:
            return self.produce()
        if not self.running and self._queue.empty():
            self.start()
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self.running and self._queue.empty():
                    raise RuntimeError(f"{self.name}: the prefetch thread stopped") from None
        if isinstance(item, _Failure):
            raise item.exc
        return item

    def request_stop(self):
        """Ask the thread to finish without waiting (safe from a finalizer)."""
        self._stop.set()

    def stop(self):
        """End the thread and discard every queued batch."""
        self._stop.set()
        t = self._thread
        if t is not None:
            while t.is_alive():
                self._drain()
                t.join(timeout=_POLL_S)
            self._thread = None
        self._drain()

    def _drain(self):
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return
