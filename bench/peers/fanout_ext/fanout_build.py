"""Builds fanout.c with this machine's C compiler, at benchmark time (nothing binary is committed).

    python bench/peers/fanout_ext/fanout_build.py OUT_DIR   # prints the module's directory

`build(out_dir)` compiles once per source and Python version (the directory name carries a hash
of both) and returns the directory to put on sys.path; `Unavailable` says why it cannot (no C
compiler, no Python headers, or the compiler's own error). The io_uring variant
(`send_all_uring`) is compiled in when liburing's headers and library are there (Debian:
liburing-dev); `uring_problem(directory)` says why not otherwise.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

SOURCE = Path(__file__).with_name("fanout.c")
COMPILE_TIMEOUT_S = 120
NO_URING = "no-uring.txt"  # next to the module when it was built without io_uring: the reason


class Unavailable(Exception):
    """The extension cannot be built here; the message says why."""


def compiler() -> str | None:
    configured = (sysconfig.get_config_var("CC") or "").split()
    for candidate in [*configured[:1], "cc", "gcc", "clang"]:
        path = shutil.which(candidate)
        if path:
            return path
    return None


def build(out_dir: Path) -> Path:
    cc = compiler()
    if cc is None:
        raise Unavailable("no C compiler")
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").exists():
        raise Unavailable(f"no Python headers ({include}/Python.h)")
    digest = hashlib.sha256(SOURCE.read_bytes() + sys.version.encode()).hexdigest()[:12]
    target_dir = out_dir / f"fanout-{digest}"
    module = target_dir / f"fanout{sysconfig.get_config_var('EXT_SUFFIX')}"
    if module.exists():
        return target_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    building = module.with_suffix(".building")
    command = [cc, "-O2", "-shared", "-fPIC", "-Wall", "-Werror", f"-I{include}", str(SOURCE),
               "-o", str(building)]  # fmt: skip
    with_uring = subprocess.run(
        [*command, "-DFANOUT_URING", "-luring"],
        capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
    )  # fmt: skip
    if with_uring.returncode != 0:
        result = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        if result.returncode != 0:
            raise Unavailable(f"{Path(cc).name} failed: {result.stderr.strip()[-300:]}")
        missing = "liburing.h" in with_uring.stderr or "-luring" in with_uring.stderr
        reason = "liburing not installed" if missing else with_uring.stderr.strip()[-300:]
        (target_dir / NO_URING).write_text(reason)
    building.rename(module)  # atomic: a concurrent run never imports half a file
    return target_dir


def uring_problem(directory: Path) -> str | None:
    """Why the module in `directory` has no `send_all_uring`, or None if it has."""
    reason = directory / NO_URING
    return reason.read_text() if reason.exists() else None


if __name__ == "__main__":
    try:
        print(build(Path(sys.argv[1])))
    except Unavailable as exc:
        sys.exit(f"fanout: {exc}")
