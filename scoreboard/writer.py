"""The group-commit writer: one thread that commits every queued write of a wake-up at once.

Callers on the IOLoop queue a payload and await a future; the thread takes everything that
queued up while the previous batch committed, hands it to `commit` (one transaction), and
resolves the batch's futures on the loop in one `call_soon_threadsafe`. A batch that fails is
retried one payload at a time, so one bad write fails alone, unless the failure says the
database itself is the trouble: then every write of the batch is refused at once. What a
payload is, and how it is written, is the caller's business (scoreboard/store.py): this module
knows no SQL.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from . import errors

log = logging.getLogger(__name__)

P = TypeVar("P")
#: Writes committed in one transaction at most: bounds the time a batch holds the write lock
#: and the work redone one by one when a batch fails.
MAX_BATCH_WRITES = 1000

Outcomes = list[tuple["asyncio.Future[None]", BaseException | None]]


class GroupWriter(Generic[P]):
    """The writer thread and its queue.

    `commit(payloads)` writes payloads in one transaction (raising on failure);
    `translate(payload, exc)` gives the error its caller sees when that payload fails alone;
    `outage(exc)` is the error for the whole batch when `exc` is the database's fault (else
    None).
    """

    def __init__(
        self,
        commit: Callable[[list[P]], None],
        translate: Callable[[P, Exception], BaseException],
        *,
        outage: Callable[[Exception], errors.ScoreboardError | None],
        max_pending: int,
    ) -> None:
        self._commit_payloads = commit
        self._translate = translate
        self._outage = outage
        self._max_pending = max_pending
        # A queued write and the future of its caller; None in place of both stops the thread.
        self._queue: queue.SimpleQueue[tuple[P, asyncio.Future[None]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders "closed?" checks against the stop marker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Transactions committed, and the writes they carried (for tests, metrics).
        self.batches_committed = 0
        self.writes_committed = 0

    @property
    def pending(self) -> int:
        """Writes queued and not yet committed (approximate)."""
        return self._queue.qsize()

    def start(self, loop: asyncio.AbstractEventLoop | Any) -> None:
        """Start the thread; callers' futures are resolved on `loop`."""
        if self._thread is not None:
            raise RuntimeError("the store is already started")
        # A tornado IOLoop wraps the asyncio loop that futures belong to.
        self._loop = getattr(loop, "asyncio_loop", loop)
        self._thread = threading.Thread(target=self._main, name="scoreboard-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Commit every write queued so far and stop the thread; later writes are refused."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._thread is not None:
                self._queue.put(None)
        if self._thread is not None:
            self._thread.join()

    def submit(self, payload: P) -> asyncio.Future[None]:
        """Queue `payload`; the future resolves once it is committed (or fails)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("Store.start() was not called")
        if asyncio.get_running_loop() is not loop:
            # Futures are neither thread-safe nor shareable across loops.
            raise RuntimeError("Store writes must be awaited on the loop given to start()")
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._closed:
                raise errors.NotReady("the server is shutting down")
            if self._queue.qsize() >= self._max_pending:
                raise errors.Overloaded("too many writes are waiting for the database")
            self._queue.put((payload, future))
        return future

    # -- the thread ------------------------------------------------------------------------

    def _main(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stopping = False
        while not stopping:
            batch: list[tuple[P, asyncio.Future[None]]] = []
            item = get()
            # Everything that queued up while the previous batch committed goes in this one.
            while True:
                if item is None:
                    # close() queues the marker last (under the lock), so nothing follows it.
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= MAX_BATCH_WRITES:
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._commit(batch)
                except Exception:  # never let the thread die: callers would wait forever
                    log.exception("the store writer failed on a batch of %d", len(batch))
                    self._settle([(future, errors.Internal()) for _, future in batch])

    def _commit(self, batch: list[tuple[P, asyncio.Future[None]]]) -> None:
        try:
            self._commit_counted([payload for payload, _ in batch])
        except Exception as exc:
            outage = self._outage(exc)
            if outage is not None:
                # The database, not a write, is the trouble: none of these is acknowledged,
                # and committing them one by one would only fail the same way.
                log.warning("%d writes refused: %s", len(batch), outage.detail)
                self._settle([(future, outage) for _, future in batch])
                return
            if len(batch) == 1:
                payload, future = batch[0]
                self._settle([(future, self._translate(payload, exc))])
                return
            log.warning(
                "group commit of %d writes failed (%s); committing them one by one",
                len(batch),
                # The driver's message only: the statement's parameters are users' data.
                getattr(exc, "orig", exc),
            )
            outcomes: Outcomes = []
            for payload, future in batch:
                try:
                    self._commit_counted([payload])
                except Exception as single:
                    outcomes.append((future, self._translate(payload, single)))
                else:
                    outcomes.append((future, None))
            self._settle(outcomes)
            return
        self._settle([(future, None) for _, future in batch])

    def _commit_counted(self, payloads: list[P]) -> None:
        self._commit_payloads(payloads)
        # Only here has COMMIT returned.
        self.batches_committed += 1
        self.writes_committed += len(payloads)

    def _settle(self, outcomes: Outcomes) -> None:
        """Resolve the callers' futures on their loop: one wake-up per batch, not per write."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_resolve, outcomes)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.warning("event loop closed; %d write results dropped", len(outcomes))


def _resolve(outcomes: Outcomes) -> None:
    for future, error in outcomes:
        if future.done():  # the caller gave up (cancelled); the write stands regardless
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
