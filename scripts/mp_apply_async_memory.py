#!/usr/bin/env python3
"""apply_async_memory for Python's multiprocessing.Pool, as `mqpool bench` measures it.

    python3 scripts/mp_apply_async_memory.py [--quick] [--procs N] [--mqpool PATH]

Holds every worker of a fork Pool busy with a call that waits for an Event, then makes
N apply_async(square, i) calls (1,000,000; 50,000 with --quick, the sizes of `mqpool
bench` and `mqpool bench --quick`), which all stay outstanding; prints the growth of the
parent's resident memory (/proc/self/statm) over those N calls, the list of
AsyncResults included, divided by N. Then releases the workers and checks every result.
One JSON line, in the format of `mqpool bench`:

    {"system": "mp", "workload": "apply_async_memory", "value": ..., "unit": "B/call", ...}

With --mqpool PATH, first runs `PATH bench [--quick] --processes N apply_async_memory`,
passes its line through and then prints the ratio mp/mqpool, so that both
figures come from one run on the same machine. Python 3 standard library only.
"""
import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys

HOLD_TIMEOUT_S = 30
SIZES = {False: 1_000_000, True: 50_000}  # by --quick

# Made before the Pool and inherited by its workers at fork: a Semaphore or an Event
# cannot travel as a task's argument.
hold_started = None
hold_release = None


def square(x):
    return x * x


def hold():
    hold_started.release()
    hold_release.wait()
    return True


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE")


def measure(n, procs):
    global hold_started, hold_release
    ctx = mp.get_context("fork")
    started, release = ctx.Semaphore(0), ctx.Event()
    hold_started, hold_release = started, release
    with ctx.Pool(procs) as pool:
        assert pool.map(square, range(1000))[-1] == 999 * 999  # warm up: workers started
        holders = [pool.apply_async(hold) for _ in range(procs)]
        for _ in range(procs):
            if not started.acquire(timeout=HOLD_TIMEOUT_S):
                release.set()
                raise RuntimeError("not every worker took a holding call")
        before = resident_bytes()
        results = [pool.apply_async(square, (i,)) for i in range(n)]
        after = resident_bytes()
        answered = sum(r.ready() for r in results)
        release.set()
        assert all(h.get() for h in holders)
        if answered:
            raise RuntimeError(f"{answered} calls were answered while every worker was held")
        assert all(r.get() == i * i for i, r in enumerate(results)), "a wrong square"
    return (after - before) / n


def emit(value, n, procs):
    print(json.dumps({"system": "mp", "workload": "apply_async_memory", "value": round(value, 3),
                      "unit": "B/call", "params": {"n": n, "procs": procs}}), flush=True)


def run_mqpool(path, quick, procs):
    """Runs `mqpool bench apply_async_memory`; prints its line and returns its value."""
    cmd = [path, "bench", "--processes", str(procs)] + (["--quick"] if quick else [])
    p = subprocess.run(cmd + ["apply_async_memory"], stdout=subprocess.PIPE, text=True,
                       check=True)
    row = next(json.loads(x) for x in p.stdout.splitlines() if x.startswith("{"))
    print(json.dumps(row), flush=True)
    return row["value"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="50,000 calls, not 1,000,000")
    ap.add_argument("--procs", type=int, default=os.cpu_count(), help="worker processes [cores]")
    ap.add_argument("--mqpool", help="also run PATH bench apply_async_memory, then the ratio")
    a = ap.parse_args()
    if a.procs < 1:
        ap.error("--procs must be at least 1")
    n = SIZES[a.quick]
    ours = run_mqpool(a.mqpool, a.quick, a.procs) if a.mqpool else None
    value = measure(n, a.procs)
    emit(value, n, a.procs)
    if ours:
        print(f"# mp uses {value / ours:.2f}x the memory of mqpool per outstanding apply_async")
    return 0


if __name__ == "__main__":
    sys.exit(main())
