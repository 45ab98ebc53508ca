#!/usr/bin/env python3
"""`mqpool run`: the pool from the shell, as a user meets it (docs/RUN.md).

Usage: test_run.py MQPOOL FAKE_STATUS_BROKER VERSION [unittest arguments, e.g. a class]

The helpers (deadlines on every child, sessions killed at the end, no fixed ports) are
test_cli.py's. Jobs that must be seen running write a file; the test waits for it with
a deadline instead of sleeping.
"""

import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli  # noqa: E402
from test_cli import Case, DEADLINE, kill_session, read_line  # noqa: E402

SUMMARY = re.compile(r"mqpool run: (interrupted: )?(\d+) jobs done, (\d+) failed, "
                     r"(\d+) retried, [\d.]+ s\n")


def mqpool_run(*args, stdin="", env=None, timeout=DEADLINE):
    """`mqpool run ARGS` with `stdin`; returns (returncode, stdout, stderr)."""
    proc = subprocess.Popen([test_cli.MQPOOL, "run", *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc)
        raise AssertionError(f"mqpool run {args} did not finish within {timeout} s")
    return proc.returncode, out, err


def wait_for(predicate, what, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def read_pid(path):
    wait_for(lambda: os.path.exists(path) and open(path).read().strip(), f"{path} written")
    return int(open(path).read())


def summary(test, err):
    m = SUMMARY.search(err)
    test.assertIsNotNone(m, f"no summary line in {err!r}")
    return bool(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4))


def read_err_until(proc, text, timeout=DEADLINE):
    """Reads proc's stderr line by line until a line holds `text`; returns what it read."""
    deadline = time.monotonic() + timeout
    seen = ""
    while text not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stderr], [], [], max(left, 0))
        if not ready:
            raise AssertionError(f"no {text!r} on stderr within {timeout} s: {seen!r}")
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"stderr ended without {text!r}: {seen!r}")
        seen += line
    return seen


class RunCase(Case):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="mqpool-run-test-")
        self.addCleanup(self.dir.cleanup)

    def start_run(self, *args, stdin=""):
        """`mqpool run ARGS` in the background, `stdin` written to it and closed."""
        proc = subprocess.Popen([test_cli.MQPOOL, "run", *map(str, args)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                bufsize=1, start_new_session=True)
        self.addCleanup(lambda: (kill_session(proc), proc.stdout.close(), proc.stderr.close()))
        proc.stdin.write(stdin)
        proc.stdin.close()
        return proc

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def lines(self, n):
        return "".join(f"{i}\n" for i in range(1, n + 1))


class Run(RunCase):
    """A local pool (the default)."""

    def test_outputs_in_input_order_whole_and_values(self):
        # Job 1 is the slowest, so that in input order means waiting for it.
        code, out, err = mqpool_run("--processes", "2", "--", "sh", "-c",
                                    '[ "$1" = 1 ] && sleep 0.3; echo "line $1"; echo "end $1"',
                                    "sh", "{}", stdin=self.lines(12))
        self.assertEqual(code, 0, err)
        self.assertEqual(out, "".join(f"line {i}\nend {i}\n" for i in range(1, 13)))
        self.assertEqual(summary(self, err), (False, 12, 0, 0))

    def test_each_replacement_string(self):
        code, out, err = mqpool_run("--", "echo", "{}|{.}|{/}|{//}|{/.}|{#}|{x}",
                                    stdin="dir/sub/file.tar.gz\nplain\n/abs.c\n.hidden\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(out.splitlines(), [
            "dir/sub/file.tar.gz|dir/sub/file.tar|file.tar.gz|dir/sub|file.tar|1|{x}",
            "plain|plain|plain|.|plain|2|{x}",
            "/abs.c|/abs|abs.c|/|abs|3|{x}",
            ".hidden|.hidden|.hidden|.|.hidden|4|{x}",
        ])

    def test_no_replacement_string_appends_the_item_as_one_argument(self):
        code, out, err = mqpool_run("--", "printf", "<%s>", stdin="a b\n'q'\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(out, "<a b><'q'>")

    def test_the_command_without_dashes_and_words_cli11_would_parse(self):
        code, out, err = mqpool_run("--processes", "1", "printf", "[%s] -9 -- ", stdin="a\n")
        self.assertEqual((code, out), (0, "[a] -9 -- "), err)
        code, out, err = mqpool_run("--dry-run", "echo", "--", "{}", stdin="a\n")
        self.assertEqual((code, out), (0, "echo -- a\n"), err)
        code, out, err = mqpool_run("--dry-run", "--", "--odd", stdin="a\n")
        self.assertEqual((code, out), (0, "--odd a\n"), err)

    def test_nul_separated_items_and_arg_file(self):
        code, out, err = mqpool_run("-0", "--", "printf", "[%s]", stdin="one\ntwo\0three\0")
        self.assertEqual((code, out), (0, "[one\ntwo][three]"), err)
        with open(self.path("args"), "w") as f:
            f.write("x\ny\n")
        code, out, err = mqpool_run("--arg-file", self.path("args"), "--", "echo", "{#}{}",
                                    stdin="ignored\n")
        self.assertEqual((code, out), (0, "1x\n2y\n"), err)

    def test_dry_run_prints_commands_and_runs_nothing(self):
        code, out, err = mqpool_run("--dry-run", "--", "touch", self.path("{}"),
                                    stdin="a\nb c\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(out, f"touch {self.path('a')}\ntouch '{self.path('b c')}'\n")
        self.assertEqual(os.listdir(self.dir.name), [])

    def test_failures_exit_status_and_prefixed_stderr(self):
        code, out, err = mqpool_run("--", "sh", "-c", 'echo "out $1"; echo "oops $1" >&2; '
                                    'exit $1', "sh", "{}", stdin="0\n3\n0\n5\n")
        self.assertEqual(code, 2, err)  # the number of failed jobs
        self.assertEqual(out, "out 0\nout 3\nout 0\nout 5\n")
        self.assertIn("3: oops 3\n", err)
        self.assertIn("mqpool run: job 2 (3) exited 3\n", err)
        self.assertIn("mqpool run: job 4 (5) exited 5\n", err)
        self.assertIn("oops 0\n", err)  # a job that succeeded: its stderr as it is
        self.assertNotIn("0: oops 0", err)
        self.assertEqual(summary(self, err), (False, 4, 2, 0))

    def test_exit_status_is_capped_at_101(self):
        code, _, err = mqpool_run("--", "false", stdin=self.lines(130))
        self.assertEqual(code, 101, err)
        self.assertEqual(summary(self, err), (False, 130, 130, 0))

    def test_a_command_that_cannot_start_fails_with_127(self):
        code, _, err = mqpool_run("--", "/nonexistent/cmd", stdin="x\n")
        self.assertEqual(code, 1)
        self.assertIn("exited 127", err)
        self.assertIn("/nonexistent/cmd", err)

    def test_retries_rerun_a_failing_job(self):
        # Fails on its first two runs, succeeds on the third.
        script = f'n=$(cat {self.path("count")} 2>/dev/null || echo 0); ' \
                 f'echo $((n + 1)) > {self.path("count")}; [ "$n" -ge 2 ]'
        code, _, err = mqpool_run("--retries", "1", "--", "sh", "-c", script, stdin="x\n")
        self.assertEqual(code, 1, err)
        self.assertEqual(summary(self, err), (False, 1, 1, 1))
        os.remove(self.path("count"))
        code, _, err = mqpool_run("--retries", "2", "--", "sh", "-c", script, stdin="x\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(summary(self, err), (False, 1, 0, 2))
        self.assertEqual(open(self.path("count")).read(), "3\n")

    def test_timeout_kills_the_job_and_reports_it(self):
        pidfile = self.path("pid")
        code, _, err = mqpool_run("--timeout", "500ms", "--", "sh", "-c",
                                  f'echo $$ > {pidfile}; exec sleep 100', stdin="x\n")
        self.assertEqual(code, 1, err)
        self.assertIn("mqpool run: job 1 (x) ran past --timeout and was killed", err)
        pid = int(open(pidfile).read())
        wait_for(lambda: not pid_alive(pid), "the timed-out sleep gone")

    def test_outputs_of_several_mib_come_whole(self):
        code, out, err = mqpool_run("--", "sh", "-c", 'head -c 3000000 /dev/zero | tr "\\0" "$1"',
                                    "sh", "{}", stdin="a\nb\nc\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(out, "a" * 3000000 + "b" * 3000000 + "c" * 3000000)

    def test_max_output_cuts_and_says_so(self):
        code, out, err = mqpool_run("--max-output", "1K", "--", "sh", "-c",
                                    "head -c 5000 /dev/zero", "{}", stdin="x\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(len(out), 1024)
        self.assertIn("standard output cut at 1024 bytes (5000 bytes in all)", err)

    def test_unordered_prints_a_job_as_it_ends(self):
        # Job 1 runs until the test has read job 2's output: only --unordered prints it.
        gate = self.path("gate")
        proc = self.start_run("--unordered", "--processes", "2", "--", "sh", "-c",
                              f'if [ "$1" = 1 ]; then while [ ! -e {gate} ]; do sleep 0.02; '
                              'done; fi; echo "job $1"', "sh", "{}", stdin="1\n2\n")
        self.assertEqual(read_line(proc), "job 2\n")
        open(gate, "w").close()
        self.assertEqual(read_line(proc), "job 1\n")
        self.assertEqual(proc.wait(timeout=DEADLINE), 0)

    def test_joblog_columns(self):
        log = self.path("log")
        t0 = time.time()
        code, _, err = mqpool_run("--joblog", log, "--", "sh", "-c", "exit $1", "sh", "{}",
                                  stdin="0\n4\n")
        t1 = time.time()
        self.assertEqual(code, 1, err)
        rows = [line.split("\t") for line in open(log).read().splitlines()]
        self.assertEqual(rows[0], ["Seq", "Host", "Starttime", "JobRuntime", "Send", "Receive",
                                   "Exitval", "Signal", "Command"])
        self.assertEqual(sorted(r[0] for r in rows[1:]), ["1", "2"])
        for r in rows[1:]:
            self.assertEqual(len(r), 9, r)
            self.assertEqual(r[1], socket.gethostname())
            self.assertTrue(t0 - 1 <= float(r[2]) <= t1 + 1, r)
            self.assertGreaterEqual(float(r[3]), 0)
            seq = int(r[0])
            self.assertEqual((r[6], r[7]), ("0" if seq == 1 else "4", "0"))
            self.assertEqual(r[8], f"sh -c 'exit $1' sh {'0' if seq == 1 else '4'}")

    def test_progress_bar_under_a_terminal_only(self):
        cmd = f"printf '1\\n2\\n3\\n' | {test_cli.MQPOOL} run -- true"
        proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                              text=True, timeout=DEADLINE, start_new_session=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout, r"3/3 +100%  [\d.]+ jobs/s")
        code, _, err = mqpool_run("--", "true", stdin="1\n2\n3\n")
        self.assertEqual(code, 0)
        self.assertNotIn("jobs/s", err)
        self.assertNotIn("\r", err)
        code, _, err = mqpool_run("--bar", "--", "true", stdin="1\n2\n3\n")
        self.assertIn("3/3", err)

    def test_bad_options_are_one_line_and_255(self):
        for args, part in ((["--halt", "soon", "--", "true"], "--halt"),
                           (["--timeout", "ten", "--", "true"], "--timeout"),
                           (["--max-output", "7X", "--", "true"], "--max-output"),
                           (["--resume", "--", "true"], "--joblog"),
                           (["--arg-file", self.path("nothing"), "--", "true"], "nothing"),
                           (["--retries", "-1", "--", "true"], "--retries"),
                           (["--bogus", "--", "true"], "--bogus"),
                           ([], "command")):
            code, out, err = mqpool_run(*args)
            self.assertEqual(code, 255, (args, err))
            self.assert_one_line_error(err, part)


class Stop(RunCase):
    """--halt, Ctrl-C, a killed run resumed, a killed worker."""

    def blocker(self, blocked_item):
        """A job script: records its run, and item `blocked_item` waits for ever."""
        return (f'echo "$1" >> {self.path("runs")}; if [ "$1" = {blocked_item} ]; then '
                f'echo $$ > {self.path("pid")}; exec sleep 100; fi; echo "done $1"')

    def runs(self):
        with open(self.path("runs")) as f:
            return f.read().split()

    def test_halt_now_kills_the_running_jobs(self):
        # Job 1 runs for ever; job 2 fails once job 1 is running; the rest is quick.
        script = (f'if [ "$1" = 2 ]; then while [ ! -e {self.path("pid")} ]; do sleep 0.02; '
                  'done; exit 1; fi; ' + self.blocker(1))
        code, _, err = mqpool_run("--processes", "2", "--halt", "now,fail=1", "--", "sh", "-c",
                                  script, "sh", "{}", stdin=self.lines(50))
        self.assertEqual(code, 1, err)
        self.assertIn("halting after 1 failed jobs", err)
        pid = int(open(self.path("pid")).read())
        wait_for(lambda: not pid_alive(pid), "the running job killed")
        self.assertLess(len(self.runs()), 49, "jobs went on starting after the halt")

    def test_halt_soon_lets_the_running_job_finish_and_starts_none(self):
        gate = self.path("gate")
        script = (f'echo "$1" >> {self.path("runs")}; if [ "$1" = 1 ]; then while [ ! -e {gate} ]; '
                  'do sleep 0.02; done; echo finished; fi; [ "$1" != 2 ]')
        proc = self.start_run("--processes", "2", "--halt", "soon,fail=1", "--", "sh", "-c",
                              script, "sh", "{}", stdin=self.lines(50))
        read_err_until(proc, "halting after 1 failed jobs")
        open(gate, "w").close()
        self.assertEqual(proc.wait(timeout=DEADLINE), 1)
        self.assertEqual(proc.stdout.read(), "finished\n")
        self.assertEqual(sorted(self.runs()), ["1", "2"], "a job started after the halt")

    def run_until_blocked(self):
        """`mqpool run` over 1..40 with a joblog; returns it once job 20 is running."""
        proc = self.start_run("--processes", "2", "--joblog", self.path("log"), "--", "sh", "-c",
                              self.blocker(20), "sh", "{}", stdin=self.lines(40))
        read_pid(self.path("pid"))
        return proc

    def resume_and_check(self):
        first_log = open(self.path("log")).read().splitlines()[1:]
        finished = {int(r.split("\t")[0]) for r in first_log}
        self.assertTrue(finished, "nothing finished before the stop")
        self.assertNotIn(20, finished)
        before = self.runs()
        os.remove(self.path("pid"))
        code, out, err = mqpool_run("--processes", "2", "--joblog", self.path("log"), "--resume",
                                    "--", "sh", "-c", 'echo "$1" >> ' + self.path("runs") +
                                    '; echo "done $1"', "sh", "{}", stdin=self.lines(40))
        self.assertEqual(code, 0, err)
        rerun = [int(x) for x in self.runs()[len(before):]]
        self.assertEqual(sorted(rerun), sorted(set(range(1, 41)) - finished),
                         "the resumed run must run exactly the jobs the log lacks")
        rows = open(self.path("log")).read().splitlines()
        self.assertEqual(rows[0].split("\t")[0], "Seq")
        self.assertEqual(sorted(int(r.split("\t")[0]) for r in rows[1:]), list(range(1, 41)))

    def test_ctrl_c_stops_cleanly_and_resume_goes_on(self):
        proc = self.run_until_blocked()
        sleeper = int(open(self.path("pid")).read())
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(timeout=DEADLINE), 130)
        err = proc.stderr.read()
        interrupted, done, _, _ = summary(self, err)
        self.assertTrue(interrupted)
        wait_for(lambda: not pid_alive(sleeper), "the running job killed")
        self.assertEqual(done, len(open(self.path("log")).read().splitlines()) - 1)
        self.resume_and_check()

    def test_a_run_killed_half_way_resumes_without_rerunning_finished_jobs(self):
        proc = self.run_until_blocked()
        sleeper = int(open(self.path("pid")).read())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=DEADLINE)
        wait_for(lambda: not pid_alive(sleeper), "the running job killed with its pool")
        self.resume_and_check()

    def test_a_job_whose_worker_is_killed_runs_again(self):
        mark, pidfile = self.path("mark"), self.path("executor")
        script = (f'if [ ! -e {mark} ]; then touch {mark}; echo $PPID > {pidfile}; sleep 100; '
                  'fi; echo "ran $1"')
        proc = self.start_run("--processes", "2", "--", "sh", "-c", script, "sh", "{}",
                              stdin="x\n")
        os.kill(read_pid(pidfile), signal.SIGKILL)
        self.assertEqual(proc.wait(timeout=DEADLINE), 0, proc.stderr.read())
        self.assertEqual(proc.stdout.read(), "ran x\n")


class Cluster(RunCase):
    """Against `mqpool broker` and a `mqpool worker` on this host."""

    def test_run_on_a_cluster(self):
        front, back = self.real_broker()
        worker = self.spawn(test_cli.MQPOOL, "worker", "--connect", back, "--processes", "2")
        read_line(worker)  # connected
        log = self.path("log")
        code, out, err = mqpool_run("--connect", front, "--joblog", log, "--", "sh", "-c",
                                    'echo "$1 $PPID"', "sh", "{}", stdin=self.lines(20))
        self.assertEqual(code, 0, err)
        got = [line.split() for line in out.splitlines()]
        self.assertEqual([g[0] for g in got], [str(i) for i in range(1, 21)])
        executors = {int(g[1]) for g in got}
        for pid in executors:  # the jobs ran under the worker's executors
            with open(f"/proc/{pid}/stat") as f:
                self.assertEqual(int(f.read().split(") ")[1].split()[1]), worker.pid)
        self.assertEqual(len(open(log).read().splitlines()), 21)

    def test_no_broker_is_a_one_line_error(self):
        code, _, err = mqpool_run("--connect", "tcp://127.0.0.1:1", "--", "true", stdin="x\n",
                                  env=dict(os.environ))
        self.assertEqual(code, 255)
        self.assert_one_line_error(err, "mqpool run:")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    test_cli.MQPOOL, test_cli.FAKE, test_cli.VERSION = sys.argv[1:4]
    unittest.main(argv=[sys.argv[0]] + sys.argv[4:], verbosity=2)
