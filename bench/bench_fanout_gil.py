"""How long a broadcast keeps the GIL: the floor's Python send loop against the C send loop.

    python bench/bench_fanout_gil.py [--clients 2000] [--broadcasts 20] [--runs 3]

The second benefit issue 10 expects of a GIL-free send loop: during a broadcast, another Python
thread of the server (the one that makes posts durable, say) can run on the second core. Each
run starts bench/peers/gilfree_peer.py four ways, in turn: the floor's Python loop and the C
loop, each alone and with a Python thread that only counts (`--busy-thread`, the worst case:
a thread that always wants the GIL). The same raw clients as bench_all.py connect, each
broadcast is awaited until every client has it, and the peer's `GET /stats` gives the send
loop's wall time (mean and longest per broadcast) and thread CPU time, and the counting thread's
rate during the send loops against its rate outside them (1.0: the broadcast took nothing).
Prints one table; medians of the runs. Not a test, and not part of `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_all
import bench_ws

from scoreboard.loadclient import ClientGroup, HttpConnection, Protocol, Target, upgrade_request

BUSY_DELIVERY_TIMEOUT_S = 120.0  # the Python loop with a busy thread is that slow
SETUPS = [("python", False), ("c", False), ("python", True), ("c", True)]


async def measure(loop: str, busy: bool, clients: int, broadcasts: int) -> dict[str, float]:
    port = bench_ws.free_port()
    command = [sys.executable, str(bench_all.PEERS / "gilfree_peer.py"), "--port", str(port),
               "--loop", loop, "--ext", str(bench_all.fanout_extension())]  # fmt: skip
    if busy:
        command.append("--busy-thread")
    with bench_all.running(command, port, "/ready", f"gil-{loop}"):
        target = Target(bench_all.HOST, port)
        http = await HttpConnection(target).open()
        group = ClientGroup(target, Protocol.PLAIN)
        try:
            await group.connect([upgrade_request(target.host_header, "/ws")] * clients)
            if len(group.clients) != clients:
                raise RuntimeError(f"{len(group.clients)}/{clients} connected")
            await asyncio.sleep(bench_all.SETTLE_S)
            await http.request("GET", "/stats")  # resets: connecting is not counted
            for _ in range(broadcasts):
                goal = group.frames + clients
                status, _ = await http.request("POST", "/broadcast")
                if status != 200:
                    raise RuntimeError(f"POST /broadcast: {status}")
                deadline = time.monotonic() + BUSY_DELIVERY_TIMEOUT_S
                while group.frames < goal:
                    if time.monotonic() > deadline:
                        raise RuntimeError("timed out waiting for the frames")
                    await asyncio.sleep(0.0005)
            status, body = await http.request("GET", "/stats")
            stats: dict[str, float] = json.loads(body)
            if group.errors:
                raise RuntimeError(f"client errors {dict(group.errors)}")
            return stats
        finally:
            group.close()
            http.close()


async def main_async(clients: int, broadcasts: int, runs: int) -> None:
    results: dict[tuple[str, bool], list[dict[str, float]]] = {setup: [] for setup in SETUPS}
    for run in range(runs):
        for loop, busy in SETUPS[run % 4 :] + SETUPS[: run % 4]:  # rotated
            print(f"run {run + 1}: {loop} loop{', busy thread' if busy else ''}",
                  file=sys.stderr, flush=True)  # fmt: skip
            results[(loop, busy)].append(await measure(loop, busy, clients, broadcasts))
    print(f"\n{clients:,} clients, {broadcasts} broadcasts per run, {runs} runs (medians)\n")
    print("| send loop | busy thread | loop wall ms (mean) | max | loop CPU ms | busy thread's "
          "rate during the loop | short writes |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for loop, busy in SETUPS:
        stats = results[(loop, busy)]

        def med(key: str, stats: list[dict[str, float]] = stats) -> float:
            return statistics.median(s[key] for s in stats)

        share = "-"
        if busy:
            share = f"{med('busy_per_s_during_loops') / med('busy_per_s_outside_loops'):.2f}x"
        shorts = sum(s["short_writes"] for s in stats)
        sockets = sum(s["sockets"] for s in stats)
        print(f"| {'Python (floor)' if loop == 'python' else 'C, GIL released'} | "
              f"{'yes' if busy else 'no'} | {med('loop_wall_ms_mean'):.2f} | "
              f"{med('loop_wall_ms_max'):.1f} | "
              f"{med('loop_cpu_ms_mean'):.2f} | {share} | {shorts}/{sockets} |")  # fmt: skip
    for (loop, busy), stats in results.items():
        print(f"- {loop}{' busy' if busy else ''}: {json.dumps(stats)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    try:
        bench_all.fanout_extension()
    except bench_all.fanout_build.Unavailable as exc:
        sys.exit(f"not measured: {exc}")
    bench_ws.raise_fd_limit(args.clients + bench_all.FD_MARGIN)
    asyncio.run(main_async(args.clients, args.broadcasts, args.runs))


if __name__ == "__main__":
    main()
