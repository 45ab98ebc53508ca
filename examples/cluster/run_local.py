#!/usr/bin/env python3
"""example.cluster: the cluster example on one machine, over ipc:// endpoints.

Starts `mqpool broker` on ipc:// endpoints in a fresh temporary directory (no ports),
two worker agents (`mqpool worker --load` the task library, and the example worker
binary), then the example client against the broker. Passes when the client exits 0
with every answer right and both agents served. Every process it starts is ended in
a finally, and every wait has a deadline.
"""
import argparse
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

DEADLINE_S = 240  # the whole run; the client alone needs a few seconds


class Proc:
    """A child process whose stdout lines are collected by a thread, for waiting on."""

    def __init__(self, name, argv):
        self.name = name
        print("start", name + ":", " ".join(argv), flush=True)
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def _next(self, deadline, waiting_for):
        """The next stdout line (echoed and kept in self.seen), or None at its end."""
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            sys.exit(f"FAIL: {self.name}: no {waiting_for} in time")
        if line is not None:
            print(f"{self.name}: {line}", flush=True)
            self.seen.append(line)
        return line

    def wait_line(self, pattern, deadline):
        """The first stdout line matching `pattern` (a re.Match); fails at its end or deadline."""
        while (line := self._next(deadline, f"line matching {pattern!r}")) is not None:
            if m := re.search(pattern, line):
                return m
        sys.exit(f"FAIL: {self.name} ended (rc {self.popen.wait()}) before a line matching {pattern!r}")

    def finish(self, deadline):
        """Reads the rest of its output; returns its exit status."""
        while self._next(deadline, "end") is not None:
            pass
        return self.popen.wait(timeout=max(0.1, deadline - time.monotonic()))

    def stop(self):
        """SIGTERM, then SIGKILL if it has not ended within 15 s."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print(f"{self.name} ignored SIGTERM; killing it", flush=True)
                self.popen.kill()
                self.popen.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--mqpool", "--tasks-lib", "--worker", "--client"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args()
    deadline = time.monotonic() + DEADLINE_S
    procs = []
    with tempfile.TemporaryDirectory(prefix="mqpool-example-") as tmp:
        front, back = f"ipc://{tmp}/front", f"ipc://{tmp}/back"
        try:
            broker = Proc("broker", [args.mqpool, "broker", "--frontend", front, "--backend", back])
            procs.append(broker)
            broker.wait_line(r"^mqpool broker: clients on (\S+), workers on (\S+)$", deadline)
            # Two agents of two executors each: the `mqpool` command with the task
            # library, and the user's own worker binary with the tasks linked in.
            loader = Proc("loader", [args.mqpool, "worker", "--connect", back, "--processes", "2",
                                     "--load", args.tasks_lib])
            own = Proc("own", [args.worker, "--connect", back, "--processes", "2"])
            procs += [loader, own]

            client = Proc("client", [args.client, front, "--tasks", "2000", "--ms", "3",
                                     "--timeout", "120"])
            procs.append(client)
            client.wait_line(r"^progress \d+/2000 hosts 1$", deadline)
            rc = client.finish(deadline)
            if rc != 0:
                sys.exit(f"FAIL: client exited {rc}")
            if client.seen[-1] != "all 2000 answers correct":
                sys.exit(f"FAIL: client's last line is {client.seen[-1]!r}")
            agents = {int(m.group(1)) for line in client.seen
                      if (m := re.match(r"^served \S+ pid (\d+): \d+ answers$", line))}
            want = {loader.popen.pid, own.popen.pid}
            if agents != want:
                sys.exit(f"FAIL: served by agents {sorted(agents)}, want both of {sorted(want)}")

            # --expect-hosts: one machine is one host, so asking for two must fail with 3.
            check = Proc("expect-hosts", [args.client, front, "--tasks", "20", "--ms", "0",
                                          "--expect-hosts", "2", "--timeout", "60"])
            procs.append(check)
            rc = check.finish(deadline)
            if rc != 3:
                sys.exit(f"FAIL: --expect-hosts 2 on one host exited {rc}, want 3")
        finally:
            for p in reversed(procs):
                p.stop()
    print("PASS: both agents served; every answer right", flush=True)


if __name__ == "__main__":
    main()
