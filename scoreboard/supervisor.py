"""`run.py --processes N`: one parent process that keeps N forked server processes running.

The parent binds the listening sockets and migrates the database before it forks (cli.py);
each child inherits the sockets and serves on them, and the kernel hands every new connection
to one of the children that are accepting. The parent itself then only waits: for a child to
die (it starts a new one in its place), and for signals (it forwards them).

Why fork, and why the parent stays this bare: the children must share the listening sockets,
which only inheritance gives without SO_REUSEPORT (with SO_REUSEPORT each child would have
its own accept queue, and the connections queued on a dead child's would be lost; on a shared
socket the other children accept them). And nothing that belongs to one process may exist in
the parent when it forks: an event loop's epoll descriptor and its signal wake-up pipe would
be shared by every child, and a database pool's open connections would carry several
processes' interleaved statements on one socket. So the parent creates no IOLoop, no asyncio
loop and no pool before forking (cli.py closes the migration's engine first), and waits with
a plain `select` on a pipe that signals wake.

Pure decisions (when to restart a child, when to give up) are in `RestartPolicy`, tested
without processes; `Supervisor` owns the children and the parent's signals.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from . import logs

log = logging.getLogger("scoreboard.supervisor")

#: A child that lived this long before dying was serving, not failing at start: it is restarted
#: at once and its count of fast deaths starts again. Start-up (migration done by the parent,
#: boards loaded in the background) takes well under this.
HEALTHY_LIFETIME_S = 10.0
#: Pause before restarting a child that died young, doubling with each such death in a row.
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
#: Fast deaths in a row of one child after which the supervisor gives up: a child that cannot
#: start (a database refusing it, a bug) would otherwise be restarted forever.
MAX_FAST_DEATHS = 5
#: How long children get to shut down gracefully after SIGTERM before they are killed. A
#: child's own bound is about 17 s (1 s for running acks, WebSockets closed over
#: --shutdown-spread 5 s plus 1 s for close handshakes, up to 10 s for running HTTP posts), so
#: this leaves room for a loaded machine; a service manager should wait longer still.
STOP_TIMEOUT_S = 25.0

#: Signals the parent handles; the children get them at their defaults until they install
#: their own.
HANDLED_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Linux prctl option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


class RestartPolicy:
    """When a dead child is started again: at once after a long life, later after a short one,
    and never again after `give_up_after` short lives in a row."""

    def __init__(
        self,
        *,
        healthy_lifetime_s: float = HEALTHY_LIFETIME_S,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        give_up_after: int = MAX_FAST_DEATHS,
    ) -> None:
        self.healthy_lifetime_s = healthy_lifetime_s
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.give_up_after = give_up_after
        self._fast_deaths: dict[int, int] = {}  # child index -> short lives in a row

    def fast_deaths(self, index: int) -> int:
        """Short lives in a row of child `index`, the last one included."""
        return self._fast_deaths.get(index, 0)

    def on_death(self, index: int, *, lived_s: float) -> float | None:
        """Seconds to wait before starting child `index` again, or None to give up."""
        if lived_s >= self.healthy_lifetime_s:
            self._fast_deaths[index] = 0
            return 0.0
        deaths = self._fast_deaths.get(index, 0) + 1
        self._fast_deaths[index] = deaths
        if deaths >= self.give_up_after:
            return None
        return min(self.first_backoff_s * 2.0 ** (deaths - 1), self.max_backoff_s)


def describe_status(status: int) -> str:
    """A wait status as a person reads it: `exit status 1`, `killed by SIGKILL`."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


@dataclass
class _Child:
    index: int
    pid: int | None = None
    started_at: float = 0.0
    restart_at: float | None = None  # when a dead child is due to be started again


class Supervisor:
    """Forks `count` children running `run_child(index)` and keeps them running until told to
    stop; `run()` returns the parent's exit status (`failure` says why when it is not 0)."""

    def __init__(
        self,
        count: int,
        run_child: Callable[[int], int],
        *,
        policy: RestartPolicy | None = None,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1:
            raise ValueError(f"expected at least 1 process, got {count!r}")
        self.run_child = run_child
        self.policy = policy or RestartPolicy()
        self.stop_timeout_s = stop_timeout_s
        self.clock = clock
        self.children = [_Child(index) for index in range(1, count + 1)]
        self.failure: str | None = None
        self._stop_deadline: float | None = None
        self._killed_stragglers = False
        self._wake_read = -1
        self._wake_write = -1
        self._parent_pid = os.getpid()

    # -- the parent --------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop_deadline is not None

    def pids(self) -> list[int]:
        """The pids of the children alive now."""
        return [child.pid for child in self.children if child.pid is not None]

    def run(self) -> int:
        """Start the children, supervise them until a stop signal or a give-up; 0 or 1."""
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        previous = {signum: signal.signal(signum, _note_signal) for signum in HANDLED_SIGNALS}
        # The C-level handler writes each signal's number here; `select` wakes on it, and the
        # numbers read back say which signals came, in order, without any handler re-entrancy.
        previous_wakeup = signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
        try:
            for child in self.children:
                self._start(child)
            while self.pids() or not self.stopping:
                self._wait(self._next_timeout())
                self._reap()
                self._act_on_time()
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(self._wake_read)
            os.close(self._wake_write)
        if self.failure is not None:
            return 1
        log.info("all processes stopped")
        return 0

    def _next_timeout(self) -> float | None:
        """Seconds until something is due without a signal: a restart or the stop deadline."""
        due = [c.restart_at for c in self.children if c.restart_at is not None]
        if self._stop_deadline is not None and not self._killed_stragglers:
            due.append(self._stop_deadline)
        if not due:
            return None
        return max(0.0, min(due) - self.clock())

    def _wait(self, timeout: float | None) -> None:
        # A signal that arrives between the checks above and this call has already written to
        # the pipe, so select returns at once: no wake-up is ever lost.
        readable, _, _ = select.select([self._wake_read], [], [], timeout)
        if not readable:
            return
        with contextlib.suppress(BlockingIOError):
            for signum in os.read(self._wake_read, 512):
                self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        if signum in STOP_SIGNALS:
            name = signal.Signals(signum).name
            if not self.stopping:
                log.info("%s: stopping %d processes gracefully", name, len(self.pids()))
                self._begin_stop()
            self._forward(signum)
        elif signum == signal.SIGHUP:
            logs.reopen()
            self._forward(signum)
        # SIGCHLD needs nothing here: every wake-up reaps.

    def _begin_stop(self) -> None:
        self._stop_deadline = self.clock() + self.stop_timeout_s
        for child in self.children:
            child.restart_at = None

    def _forward(self, signum: int) -> None:
        for pid in self.pids():
            # Gone already (its SIGCHLD is on its way): nothing to tell it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = next((c for c in self.children if c.pid == pid), None)
            if child is not None:
                self._on_death(child, describe_status(status))

    def _on_death(self, child: _Child, how: str) -> None:
        lived_s = self.clock() - child.started_at
        child.pid = None
        if self.stopping:
            log.info("process %d stopped (%s)", child.index, how)
            return
        delay = self.policy.on_death(child.index, lived_s=lived_s)
        if delay is None:
            self.failure = (
                f"process {child.index} died {self.policy.fast_deaths(child.index)} times in a "
                f"row within {self.policy.healthy_lifetime_s:g} s of starting (last: {how}); "
                "giving up"
            )
            log.error("%s; stopping the others", self.failure)
            self._begin_stop()
            self._forward(signal.SIGTERM)
            return
        log.warning(
            "process %d died after %.1f s (%s); starting it again%s",
            child.index,
            lived_s,
            how,
            f" in {delay:g} s" if delay else "",
        )
        child.restart_at = self.clock() + delay

    def _act_on_time(self) -> None:
        now = self.clock()
        if self._stop_deadline is not None:
            if now >= self._stop_deadline and not self._killed_stragglers and self.pids():
                log.warning(
                    "processes %s did not stop within %g s: killing them",
                    ", ".join(str(c.index) for c in self.children if c.pid is not None),
                    self.stop_timeout_s,
                )
                self._killed_stragglers = True
                self._forward(signal.SIGKILL)
            return
        for child in self.children:
            if child.restart_at is not None and now >= child.restart_at:
                self._start(child)

    def _start(self, child: _Child) -> None:
        child.restart_at = None
        # Signals stay pending across the fork: the child must not run the parent's handler
        # (it would write into the parent's wake-up pipe) before it has put its own in place.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._become_child(child.index)  # never returns
        except OSError as exc:  # out of processes or memory: like a child that died at once
            child.started_at = self.clock()
            self._on_death(child, f"cannot fork: {exc.strerror}")
            return
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        child.pid = pid
        child.started_at = self.clock()
        log.debug("started process %d (pid %d)", child.index, pid)

    # -- a child -----------------------------------------------------------------------------

    def _become_child(self, index: int) -> None:
        """The forked child: drop the parent's signal plumbing, run, and exit with its status.

        It never returns into the caller's code: that code belongs to the parent (in a test,
        to pytest itself).
        """
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            os.close(self._wake_read)
            os.close(self._wake_write)
            for signum in HANDLED_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            # Log rotation must not kill a child before its loop takes SIGHUP over.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            _stop_with_parent(self._parent_pid)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            status = self.run_child(index)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)


def _note_signal(signum: int, frame: object) -> None:
    """The parent's Python-level handler: the wake-up pipe already has the signal's number."""


def _stop_with_parent(parent_pid: int) -> None:
    """Ask Linux to send this child SIGTERM when the parent dies (say, of SIGKILL).

    Otherwise orphaned children would keep serving, and keep the port bound, so that the
    restarted service could not listen. Elsewhere this is a no-op: the service manager's
    process group handling is then the only guard.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
