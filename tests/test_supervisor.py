"""The supervisor of `--processes N`: its restart policy, then real forked children.

The children here are trivial (tests/supervised.py), so these tests need no server, no
database and no Redis; the cluster tests run the supervisor over real servers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scoreboard.supervisor import RestartPolicy, describe_status

HARNESS = Path(__file__).resolve().parent / "supervised.py"
DEADLINE_S = 20  # generous: these machines are shared and loaded


# -- the policy, without processes -----------------------------------------------------------


def test_a_child_that_lived_long_is_restarted_at_once_and_its_count_starts_again():
    policy = RestartPolicy(healthy_lifetime_s=10, first_backoff_s=0.5, give_up_after=3)
    assert policy.on_death(1, lived_s=0.1) == 0.5
    assert policy.on_death(1, lived_s=3600) == 0.0
    assert policy.fast_deaths(1) == 0
    assert policy.on_death(1, lived_s=0.1) == 0.5


def test_fast_deaths_in_a_row_back_off_then_give_up():
    policy = RestartPolicy(
        healthy_lifetime_s=10, first_backoff_s=0.5, max_backoff_s=1.5, give_up_after=4
    )
    delays = [policy.on_death(2, lived_s=1) for _ in range(4)]
    assert delays == [0.5, 1.0, 1.5, None]
    assert policy.fast_deaths(2) == 4
    # Each child has its own count.
    assert policy.on_death(1, lived_s=1) == 0.5


def test_wait_statuses_are_said_the_way_a_person_reads_them():
    assert describe_status(3 << 8) == "exit status 3"
    assert describe_status(signal.SIGKILL) == "killed by SIGKILL"


# -- real children ---------------------------------------------------------------------------


class Supervised:
    """tests/supervised.py running as its own process, and what its children noted."""

    def __init__(self, folder: Path, mode: str, count: int, *options: str) -> None:
        self.folder = folder
        self.count = count
        self.log_path = folder.parent / f"{folder.name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(HARNESS), mode, str(folder), str(count), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def noted(self, event: str) -> list[tuple[int, int]]:
        """(index, pid) of every child that noted `event`."""
        found = []
        for path in self.folder.glob(f"{event}-*"):
            index, pid = path.name.removeprefix(f"{event}-").split("-")
            found.append((int(index), int(pid)))
        return sorted(found)

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not happen in {DEADLINE_S} s:\n{self.output()}")
            time.sleep(0.02)

    def running(self) -> dict[int, int]:
        """index -> pid of the children started and not yet stopped or dead."""
        stopped = set(self.noted("stopped"))
        return {
            index: pid
            for index, pid in self.noted("started")
            if (index, pid) not in stopped and _alive(pid)
        }

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(DEADLINE_S + 30)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    started: list[Supervised] = []

    def start(mode: str, count: int, *options: str) -> Supervised:
        folder = tmp_path / f"run{len(started)}"
        folder.mkdir()
        started.append(Supervised(folder, mode, count, *options))
        return started[-1]

    yield start
    for run in started:  # a failed test must not leave processes behind
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()
        for pid in run.running().values():
            os.kill(pid, signal.SIGKILL)


def test_children_start_a_killed_one_is_replaced_and_sigterm_stops_all_with_status_0(supervised):
    run = supervised("serve", 3)
    run.wait_for(lambda: len(run.running()) == 3, "three children running")
    first = run.running()
    assert sorted(first) == [1, 2, 3]

    os.kill(first[2], signal.SIGKILL)
    run.wait_for(lambda: run.running().get(2, first[2]) != first[2], "process 2 started again")
    second = run.running()
    assert second[1] == first[1] and second[3] == first[3]  # the others were left alone
    assert "process 2 died after" in run.output() and "killed by SIGKILL" in run.output()

    assert run.stop(signal.SIGTERM) == 0
    # Every child got the signal and shut down by itself (it noted it), none is left.
    assert set(run.noted("stopped")) == {(i, pid) for i, pid in second.items()}
    assert not any(_alive(pid) for pid in second.values())
    assert "all processes stopped" in run.output()


def test_sigint_is_forwarded_like_sigterm(supervised):
    run = supervised("serve", 2)
    run.wait_for(lambda: len(run.running()) == 2, "two children running")
    children = run.running()
    assert run.stop(signal.SIGINT) == 0
    assert set(run.noted("stopped")) == set(children.items())


def test_sighup_reaches_every_child_and_kills_nobody(supervised):
    run = supervised("serve", 2)
    run.wait_for(lambda: len(run.running()) == 2, "two children running")
    children = run.running()
    run.process.send_signal(signal.SIGHUP)
    run.wait_for(lambda: len(run.noted("hup")) == 2, "both children noting SIGHUP")
    assert set(run.noted("hup")) == set(children.items())
    assert run.process.poll() is None and run.running() == children
    assert run.stop() == 0


def test_each_childs_log_lines_name_the_process(supervised):
    run = supervised("serve", 2)
    run.wait_for(lambda: len(run.running()) == 2, "two children running")
    children = run.running()
    run.wait_for(lambda: run.output().count("child running") == 2, "both children logging")
    for index, pid in children.items():
        assert f"[process {index} pid {pid}] scoreboard.test-child: child running" in run.output()
    assert run.stop() == 0


def test_a_crash_loop_gives_up_with_one_line_and_a_failure_status(supervised):
    run = supervised("crash", 2, "3")
    assert run.process.wait(DEADLINE_S) == 1
    failures = [line for line in run.output().splitlines() if line.startswith("scoreboard: ")]
    assert len(failures) == 1
    assert "died 3 times in a row" in failures[0] and "exit status 3" in failures[0]
    assert failures[0].endswith("giving up")
    # It backed off and stopped: no child was started more than the three times allowed.
    starts = [index for index, _ in run.noted("started")]
    assert max(starts.count(1), starts.count(2)) == 3
    assert all(starts.count(index) <= 3 for index in (1, 2))
    assert not run.running()


def test_children_that_ignore_sigterm_are_killed_after_the_stop_timeout(supervised):
    run = supervised("stubborn", 2, "5", "1")
    run.wait_for(lambda: len(run.running()) == 2, "two children running")
    children = run.running()
    assert run.stop(signal.SIGTERM) == 0
    assert not any(_alive(pid) for pid in children.values())
    assert "did not stop within 1 s: killing them" in run.output()


def test_children_stop_when_the_supervisor_is_killed(supervised):
    run = supervised("serve", 2)
    run.wait_for(lambda: len(run.running()) == 2, "two children running")
    children = run.running()
    run.stop(signal.SIGKILL)
    # Orphans would keep the port: the kernel tells them their parent died (SIGTERM).
    run.wait_for(lambda: len(run.noted("stopped")) == 2, "both orphans stopping")
    assert set(run.noted("stopped")) == set(children.items())


# -- real servers: `run.py --processes 3` (cluster mode: PostgreSQL and Redis) ---------------


def _serving_pids(log_path: Path) -> dict[int, list[int]]:
    """process index -> the pids that logged `serving on`, in order (restarts append)."""
    found: dict[int, list[int]] = {}
    for line in log_path.read_text().splitlines():
        if "] scoreboard: serving on" in line and "[process " in line:
            label = line.split("[process ", 1)[1].split("]", 1)[0]  # "2 pid 4242"
            index, _, pid = label.split()
            found.setdefault(int(index), []).append(int(pid))
    return found


def _wait_until(condition: Callable[[], bool], what: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in 60 s:\n{log_path.read_text()}")
        time.sleep(0.05)


def test_processes_3_serve_one_port_restart_a_killed_one_and_stop_with_status_0(
    tmp_path, postgres_url, private_redis
):
    from server_process import ServerProcess

    log_path = tmp_path / "cluster.log"
    server = ServerProcess(
        postgres_url, log_path, "--redis-url", private_redis.url, "--processes", "3"
    ).start()
    try:
        _wait_until(lambda: len(_serving_pids(log_path)) == 3, "three processes serving", log_path)
        log = log_path.read_text()
        assert f"serving on http://127.0.0.1:{server.port} with 3 processes" in log
        assert log.count("generated one and stored it") <= 1  # the parent settles the secret
        first = {index: pids[-1] for index, pids in _serving_pids(log_path).items()}

        os.kill(first[2], signal.SIGKILL)
        _wait_until(
            lambda: len(_serving_pids(log_path).get(2, [])) == 2, "process 2 restarted", log_path
        )
        assert "process 2 died after" in log_path.read_text()
        # The others went on serving throughout; the port answers from whichever accepts.
        assert all(_alive(first[i]) for i in (1, 3))
        admin = server.token("admin", "admin")
        assert server.request("POST", "/api/boards", {"id": "b", "title": "B"}, admin)[0] == 201

        def every_process_knows_the_board() -> bool:
            # A new board reaches the other processes through Redis, a moment later; each
            # request lands on whichever process accepts it first.
            return all(
                server.request("GET", "/api/boards/b", token=admin)[0] == 200 for _ in range(9)
            )

        _wait_until(every_process_knows_the_board, "the board reaching every process", log_path)
    finally:
        status = server.stop(signal.SIGTERM, timeout=60)
    assert status == 0
    pids = [pid for pids in _serving_pids(log_path).values() for pid in pids]
    assert not any(_alive(pid) for pid in pids)
    assert log_path.read_text().count("] scoreboard: stopped") == 3


def test_processes_3_start_up_failures_stay_one_line(tmp_path, postgres_url, private_redis):
    from server_process import REPO, SECRET

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(REPO / "run.py"), "--database-url", postgres_url,
             "--jwt-secret", SECRET, "--redis-url", private_redis.url,
             "--processes", "3", "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    in_use = f"scoreboard: cannot listen on 127.0.0.1:{port}: the address is in use\n"
    assert result.stderr == in_use


def test_processes_2_sighup_makes_every_process_reopen_the_log_file(
    tmp_path, postgres_url, private_redis
):
    from server_process import ServerProcess

    log_file = tmp_path / "scoreboard.log"
    server = ServerProcess(
        postgres_url,
        tmp_path / "out.log",
        "--redis-url", private_redis.url,
        "--processes", "2",
        "--log-file", str(log_file),
    ).start()  # fmt: skip
    try:
        _wait_until(lambda: len(_serving_pids(log_file)) == 2, "two processes serving", log_file)
        rotated = tmp_path / "scoreboard.log.1"
        log_file.rename(rotated)  # what logrotate does, then it sends SIGHUP
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)

        def all_reopened() -> bool:
            text = log_file.read_text() if log_file.exists() else ""
            return text.count("SIGHUP: reopened the log file") == 3

        _wait_until(all_reopened, "the supervisor and both processes reopening", rotated)
        text = log_file.read_text()
        for writer in ("[supervisor pid ", "[process 1 pid ", "[process 2 pid "):
            assert writer in text
        assert server.process.poll() is None and server.request("GET", "/healthz")[0] == 200
    finally:
        assert server.stop() == 0
