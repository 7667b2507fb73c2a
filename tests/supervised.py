"""A Supervisor over trivial children, as a process of its own, for tests/test_supervisor.py.

    python tests/supervised.py MODE DIR COUNT [GIVE_UP_AFTER] [STOP_TIMEOUT_S]

Each child notes what happens to it as empty files in DIR (`started-<index>-<pid>`,
`stopped-…`, `hup-…`), so the test sees it without parsing logs. MODE says how children
behave: `serve` (run until SIGTERM), `crash` (exit 3 at once), `stubborn` (ignore SIGTERM).
The supervisor's exit status is this process's.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoreboard import logs
from scoreboard.supervisor import RestartPolicy, Supervisor

log = logging.getLogger("scoreboard.test-child")


def child(mode: str, folder: Path, index: int) -> int:
    logs.label_process(f"process {index} pid {os.getpid()}")
    me = f"{index}-{os.getpid()}"

    def note(event: str) -> None:
        (folder / f"{event}-{me}").touch()

    def on_term(signum: int, frame: object) -> None:
        note("stopped")
        raise SystemExit(0)

    signal.signal(signal.SIGHUP, lambda signum, frame: note("hup"))
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else on_term)
    note("started")
    log.info("child running")
    if mode == "crash":
        return 3
    while True:
        time.sleep(60)


def main() -> int:
    mode, folder, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    give_up_after = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    stop_timeout_s = float(sys.argv[5]) if len(sys.argv) > 5 else 20.0
    logs.configure("info")
    supervisor = Supervisor(
        count,
        lambda index: child(mode, folder, index),
        # Fast backoff so that a crash loop ends in well under a second, but not at once.
        policy=RestartPolicy(first_backoff_s=0.05, max_backoff_s=0.2, give_up_after=give_up_after),
        stop_timeout_s=stop_timeout_s,
    )
    status = supervisor.run()
    if supervisor.failure is not None:
        print(f"scoreboard: {supervisor.failure}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
