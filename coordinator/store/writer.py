"""The group-commit writer: one thread runs queued writes in shared transactions and answers each after
the one commit. It is given callables, so it knows nothing of the store."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("edgeatlas.coordinator")
MAX_BATCH = 1024  # operations that share one transaction (and one fsync)
TOUCH_FLUSH_S = 1.0  # heartbeats are written together at most this long after they arrive


def settle(future, value, exc: BaseException | None) -> None:
    """Answers a waiting caller; one that gave up (its call cancelled, say at shutdown) is skipped, so the
    writer thread never dies on it: what was written stays written."""
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


def _settle_all(results: list[tuple[Op, object, BaseException | None]]) -> None:
    for op, value, exc in results:
        settle(op.future, value, exc)


def deliver(results: list[tuple[Op, object, BaseException | None]]) -> None:
    """Answers a batch: a thread's futures at once, an event loop's with one wake-up of that loop for all of
    them (not one per call: at a thousand reports a second, those wake-ups were a large part of the cost)."""
    loops: dict[asyncio.AbstractEventLoop, list] = {}
    for op, value, exc in results:
        if op.loop is None:
            settle(op.future, value, exc)
        else:
            loops.setdefault(op.loop, []).append((op, value, exc))
    for loop, answers in loops.items():
        try:
            loop.call_soon_threadsafe(_settle_all, answers)
        except RuntimeError:  # the loop has closed (shutdown): nobody is waiting any more
            pass


@dataclass
class Op:
    """One queued write: fn(session) → the answer. `on_integrity`: the answer when a unique key says it was
    stored already; `flush_first`: fn queries by more than keys, so the writes queued before it are flushed
    first; `report`: (report_id, task_id) of a report, read ahead with the batch's others."""

    fn: object
    future: object
    on_integrity: object = None
    flush_first: bool = False
    report: tuple[str, int] | None = None
    loop: asyncio.AbstractEventLoop | None = None


class GroupCommit:
    """The store's one writer thread. Leases and reports that arrive together run in one transaction and
    are answered after its one commit (one fsync): each is durable before it is acknowledged, and the
    disk's sync time is shared instead of paid per call. It also writes buffered heartbeats."""

    def __init__(self, run_batch: Callable[[list[Op]], None], flush_touches: Callable[[], None]):
        self.run_batch = run_batch  # runs a batch in one transaction and answers its operations (deliver)
        self.flush_touches = flush_touches  # writes the buffered heartbeats
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, fn, on_integrity=None, flush_first: bool = False, report: tuple[str, int] | None = None,
               loop: asyncio.AbstractEventLoop | None = None):
        """Queues fn (see Op) and returns its future: a concurrent.futures.Future, or, given the caller's
        running event loop, an asyncio future of that loop (created here, so call it from that loop)."""
        future = loop.create_future() if loop is not None else Future()
        self.wake()
        self.queue.put(Op(fn, future, on_integrity, flush_first, report, loop))
        return future

    def wake(self) -> None:
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(target=self._run, name="edgeatlas-writer", daemon=True)
                    self.thread.start()

    def stop(self) -> None:
        with self.lock:
            thread, self.thread = self.thread, None
        if thread is not None:
            self.queue.put(None)
            thread.join(timeout=60)

    def _run(self) -> None:
        flushed = time.monotonic()
        stopping = False
        while not stopping:
            try:  # what is queued now, up to MAX_BATCH; None is the signal to stop
                batch = [self.queue.get(timeout=TOUCH_FLUSH_S)]
            except queue.Empty:
                batch = []
            while batch and batch[-1] is not None and len(batch) < MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stopping = bool(batch) and batch[-1] is None
            if stopping:
                batch.pop()
            if batch:
                self.run_batch(batch)
            if stopping or time.monotonic() - flushed >= TOUCH_FLUSH_S:
                flushed = time.monotonic()
                try:
                    self.flush_touches()
                except Exception:  # the next flush tries again; a heartbeat is not worth a dead writer
                    log.exception("writing heartbeats failed")
