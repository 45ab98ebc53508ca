#!/usr/bin/env python3
"""The `mqpool` command as a user meets it.

Usage: test_cli.py MQPOOL FAKE_STATUS_BROKER VERSION [unittest arguments, e.g. a class]

Every child process runs in a session of its own with a deadline; on a timeout the
whole session is killed, so a hang fails the test instead of hanging the suite and
leaves nothing behind. No fixed ports: sockets are bound on 127.0.0.1 port 0 (or
tcp://127.0.0.1:*) and the port is read back.
"""

import json
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

MQPOOL = FAKE = VERSION = None
DEADLINE = 20  # seconds: every command here should finish in well under one

# Must match tests/cli/fake_status_broker.cpp.
LONG_HOST = "worker-host-with-a-name-far-too-long-for-any-column.cluster.example.internal"
CANNED = {
    "broker": "00c0ffee12345678",
    "uptime_s": 3723.5,
    "workers": [
        {"host": LONG_HOST, "pid": 4242, "executors": 8, "busy": 3, "tasks_done": 1234567,
         "current_task": "linalg.norm", "current_for_s": 2.25, "connected_for_s": 312,
         "draining": False},
        {"host": "w2", "pid": 99, "executors": 2, "busy": 0, "tasks_done": 7,
         "current_task": "", "current_for_s": 0, "connected_for_s": 42, "draining": True},
        {"host": "odd\"host\\\t", "pid": 7, "executors": 1, "busy": 0, "tasks_done": 0,
         "current_task": "", "current_for_s": 0, "connected_for_s": 0, "draining": False},
    ],
    "clients": [
        {"name": "client-host:31337", "queued": 1200, "in_flight": 11, "connected_for_s": 65},
    ],
    "queued": 1200,
    "in_flight": 11,
    "done": 53210,
    "failed": 3,
    "retried": 2,
    "malformed": 1,
    "duplicates": 4,
    "tasks_per_s": 812.4,
}
KEYS = ["broker", "uptime_s", "workers", "clients", "queued", "in_flight", "done", "failed",
        "retried", "malformed", "duplicates", "tasks_per_s"]
LEVELS = "trace, debug, info, warn, error, off"


def kill_session(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=DEADLINE)


def run(*args, env=None, timeout=DEADLINE, input=None):
    """Runs a command to its end; returns (returncode, stdout, stderr)."""
    full_env = dict(os.environ)
    full_env.pop("MQPOOL_LOG_LEVEL", None)
    full_env.update(env or {})
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env,
                            stdin=subprocess.PIPE if input is not None else None,
                            start_new_session=True)
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc)
        raise AssertionError(f"{args} did not finish within {timeout} s")
    return proc.returncode, out, err


def mqpool(*args, **kw):
    return run(MQPOOL, *args, **kw)


def read_line(proc, timeout=DEADLINE):
    """The next line of proc's stdout, or an AssertionError after `timeout` seconds."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no line from {proc.args} within {timeout} s")
    return proc.stdout.readline()


def start(*args):
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1,
                            start_new_session=True)
    return proc


def free_port_holder(listen):
    """A socket bound to a free port on 127.0.0.1 (listening or not) and that port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    if listen:
        s.listen(1)
    return s, s.getsockname()[1]


class Case(unittest.TestCase):
    def spawn(self, *args):
        """A process with piped output, killed when the test ends."""
        proc = start(*args)
        self.addCleanup(lambda: (kill_session(proc), proc.stdout.close(), proc.stderr.close()))
        return proc

    def real_broker(self):
        """`mqpool broker` on tcp://127.0.0.1:* and its (clients, workers) endpoints."""
        broker = self.spawn(MQPOOL, "broker", "--frontend", "tcp://127.0.0.1:*",
                            "--backend", "tcp://127.0.0.1:*")
        m = re.fullmatch(r"mqpool broker: clients on (\S+), workers on (\S+)\n", read_line(broker))
        self.assertIsNotNone(m)
        return m.groups()

    def assert_one_line_error(self, err, *parts):
        text = err.rstrip("\n")
        self.assertTrue(text, "nothing on stderr")
        self.assertNotIn("\n", text, f"more than one line: {err!r}")
        for p in parts:
            self.assertIn(p, text)

    def assert_refused(self, args, *parts, rc=1, env=None):
        code, out, err = mqpool(*args, env=env)
        self.assertEqual(code, rc, f"{args}: rc {code}, stderr {err!r}")
        self.assert_one_line_error(err, *parts)
        return err


class Usage(Case):
    def test_no_subcommand_prints_usage_and_exits_2(self):
        code, out, err = mqpool()
        self.assertEqual(code, 2)
        self.assertNotIn("A subcommand is required", out + err)
        for word in ("Usage: mqpool", "broker", "worker", "status", "bench"):
            self.assertIn(word, err)

    def test_version(self):
        code, out, err = mqpool("--version")
        self.assertEqual((code, out, err), (0, f"mqpool {VERSION}\n", ""))

    def test_unknown_flag_is_one_line_and_non_zero(self):
        for args in (["--bogus"], ["broker", "--bogus"],
                     ["status", "--connect", "tcp://127.0.0.1:1", "--bogus"],
                     ["worker", "--connect", "tcp://127.0.0.1:1", "--bogus"],
                     ["run", "--bogus", "--", "true"]):
            code, out, err = mqpool(*args)
            self.assertNotEqual(code, 0, args)
            self.assert_one_line_error(err, "--bogus")

    def test_every_command_has_help(self):
        expected = {
            "broker": ["--frontend", "tcp://*:5555", "--backend", "tcp://*:5556", "--log-level",
                       "--curve-secret", "--authorized-keys", "--insecure", "--max-message",
                       "256M"],
            "worker": ["--connect", "--processes", "--load", "--maxtasksperchild", "--grace",
                       "10s", "--log-level", "--curve-secret", "--broker-key", "--max-message"],
            "status": ["--connect", "--json", "--watch", "--timeout", "5s", "--curve-secret",
                       "--broker-key"],
            "run": ["--connect", "--processes", "--timeout", "--retries", "--halt", "--joblog",
                    "--resume", "--dry-run", "--unordered", "--null", "--arg-file",
                    "--max-output", "64M", "--bar", "--no-bar", "{/.}", "{#}",
                    "--curve-secret", "--broker-key", "--max-message"],
            "keygen": ["NAME.key", "0600", "NAME.pub"],
        }
        for command, flags in expected.items():
            code, out, err = mqpool(command, "--help")
            self.assertEqual(code, 0, command)
            for flag in flags:
                self.assertIn(flag, out, f"{command} --help lacks {flag}")


BAD_ENDPOINTS = [
    ("foo", "not an endpoint"),
    ("tcp://127.0.0.1:99999", "above 65535"),
    ("tcp://127.0.0.1", "no port"),
]


class Broker(Case):
    def test_bad_endpoints_are_refused_naming_option_and_endpoint(self):
        for option, other in (("--frontend", "--backend"), ("--backend", "--frontend")):
            for endpoint, why in BAD_ENDPOINTS:
                self.assert_refused(["broker", option, endpoint, other, "tcp://127.0.0.1:*"],
                                    "mqpool broker: ", option, endpoint, why)

    def test_port_in_use_names_option_endpoint_and_os_reason(self):
        holder, port = free_port_holder(listen=True)
        with holder:
            endpoint = f"tcp://127.0.0.1:{port}"
            for option, other in (("--frontend", "--backend"), ("--backend", "--frontend")):
                err = self.assert_refused(["broker", option, endpoint, other, "tcp://127.0.0.1:*"],
                                          f"{option} {endpoint}: Address already in use")
                self.assertTrue(err.startswith("mqpool broker: "), err)

    def test_missing_ipc_directory_is_a_bind_failure(self):
        with tempfile.TemporaryDirectory() as tmp:
            endpoint = f"ipc://{tmp}/missing/sock"
            self.assert_refused(["broker", "--frontend", endpoint, "--backend", "tcp://127.0.0.1:*"],
                                f"--frontend {endpoint}: No such file or directory")

    def test_same_endpoint_twice_is_refused(self):
        holder, port = free_port_holder(listen=False)
        with holder:
            endpoint = f"tcp://127.0.0.1:{port}"
            self.assert_refused(["broker", "--frontend", endpoint, "--backend", endpoint],
                                "--frontend and --backend")

    def test_bad_log_level_flag_and_variable(self):
        args = ["broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*"]
        self.assert_refused(args + ["--log-level", "loud"], "--log-level loud", LEVELS)
        self.assert_refused(args, "MQPOOL_LOG_LEVEL=loud", LEVELS, env={"MQPOOL_LOG_LEVEL": "loud"})

    def test_start_line_then_sigterm_exits_0(self):
        proc = self.spawn(MQPOOL, "broker", "--frontend", "tcp://127.0.0.1:*",
                          "--backend", "tcp://127.0.0.1:*", "--log-level", "info")
        line = read_line(proc)
        m = re.fullmatch(r"mqpool broker: clients on tcp://127\.0\.0\.1:(\d+), "
                         r"workers on tcp://127\.0\.0\.1:(\d+)\n", line)
        self.assertIsNotNone(m, f"start line: {line!r}")
        ports = [int(p) for p in m.groups()]
        self.assertNotEqual(ports[0], ports[1])
        for port in ports:
            self.assertTrue(1 <= port <= 65535, port)
            # The port is the one really bound: something accepts connections there.
            socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=DEADLINE), 0)


class Worker(Case):
    # Refusals happen before the agent starts; if one did not, the agent would run and
    # the deadline would fail the test.
    def test_bad_endpoints_are_refused(self):
        for endpoint, why in BAD_ENDPOINTS + [("tcp://*:5556", "to connect")]:
            self.assert_refused(["worker", "--connect", endpoint],
                                "mqpool worker: ", "--connect", endpoint, why)

    def test_connect_is_required(self):
        code, out, err = mqpool("worker")
        self.assertNotEqual(code, 0)
        self.assert_one_line_error(err, "--connect")

    def test_values_are_checked(self):
        ok = ["worker", "--connect", "tcp://127.0.0.1:1"]
        self.assert_refused(ok + ["--processes", "0"], "--processes must be at least 1")
        self.assert_refused(ok + ["--grace", "soon"], "--grace", "soon", "500ms")
        self.assert_refused(ok + ["--grace", "10 s"], "--grace")
        self.assert_refused(ok + ["--grace", "-1s"], "--grace")
        self.assert_refused(ok + ["--heartbeat", "often"], "--heartbeat", "often")
        self.assert_refused(ok + ["--heartbeat", "0"], "--heartbeat must be at least 1ms")
        self.assert_refused(ok + ["--liveness", "0"], "--liveness must be at least 1")
        self.assert_refused(ok + ["--log-level", "loud"], "--log-level loud", LEVELS)
        self.assert_refused(ok, "MQPOOL_LOG_LEVEL=shouty", LEVELS,
                            env={"MQPOOL_LOG_LEVEL": "shouty"})

    def test_load_names_the_file_and_the_reason(self):
        ok = ["worker", "--connect", "tcp://127.0.0.1:1"]
        with tempfile.TemporaryDirectory() as tmp:
            missing = os.path.join(tmp, "missing.so")
            self.assert_refused(ok + ["--load", missing], f"--load {missing}",
                                "No such file or directory")
            text = os.path.join(tmp, "not-a-library.so")
            with open(text, "w") as f:
                f.write("this is not an ELF file\n")
            err = self.assert_refused(ok + ["--load", text], f"--load {text}: cannot load it")
            # dlerror()'s own words follow, naming the file once more.
            self.assertGreater(err.count(text), 1, err)


class Status(Case):
    def fake(self, *args):
        """A stand-in broker and its endpoint; it is killed when the test ends."""
        proc = self.spawn(FAKE, *args)
        line = read_line(proc)
        m = re.fullmatch(r"endpoint (tcp://127\.0\.0\.1:\d+)\n", line)
        self.assertIsNotNone(m, line)
        return proc, m.group(1)

    def test_json_is_one_object_on_one_line_with_every_field(self):
        proc, endpoint = self.fake()
        code, out, err = mqpool("status", "--connect", endpoint, "--json", "--timeout", "10s")
        self.assertEqual(code, 0, err)
        self.assertTrue(out.endswith("\n"))
        self.assertNotIn("\n", out[:-1], "more than one line")
        doc = json.loads(out)
        self.assertEqual(list(doc), KEYS)
        self.assertEqual(doc, CANNED)
        self.assertEqual(proc.wait(timeout=DEADLINE), 0, "the fake broker got no STATUS")

    def test_table_fits_80_columns_and_shows_the_values(self):
        proc, endpoint = self.fake()
        code, out, err = mqpool("status", "--connect", endpoint, "--timeout", "10s")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        for line in lines:
            self.assertLessEqual(len(line), 80, f"too wide: {line!r}")
        self.assertNotIn("\t", out)
        self.assertNotIn("\x1b", out)
        self.assertIn(f"broker 00c0ffee12345678 at {endpoint}, up 1h02m", lines[0])
        for value in ("1200", "53210", "812.4", "linalg.norm", "4242", "3/8", "1234567",
                      "2.2s", "5m12s", "client-host:31337", "1m05s", "42s"):
            self.assertIn(value, out)
        summary = "\n".join(lines[1:4])
        for label, value in (("queued", "1200"), ("in flight", "11"), ("done", "53210"),
                             ("failed", "3"), ("retried", "2"), ("malformed", "1"),
                             ("duplicates", "4")):
            self.assertRegex(summary, rf"{label} +{value}\b")
        host_rows = [l for l in lines if l.startswith("worker-host-with")]
        self.assertEqual(len(host_rows), 1, out)
        self.assertIn("~", host_rows[0], "a cut host name is marked")
        self.assertRegex(out, r"\nodd\"host\\\? +7 ", "the tab in a host name is shown as ?")
        self.assertRegex(out, r"\nw2 \(stopping\) +99 ", "a draining worker is marked")
        self.assertEqual(proc.wait(timeout=DEADLINE), 0)

    def test_refused_shows_the_brokers_reason(self):
        proc, endpoint = self.fake("refuse", "this is the worker endpoint")
        self.assert_refused(["status", "--connect", endpoint, "--timeout", "10s"],
                            "mqpool status: ", endpoint, "this is the worker endpoint")

    def test_nobody_listening_is_a_connection_error_within_the_timeout(self):
        holder, port = free_port_holder(listen=False)  # bound, so nobody else takes it
        with holder:
            endpoint = f"tcp://127.0.0.1:{port}"
            t0 = time.monotonic()
            self.assert_refused(["status", "--connect", endpoint, "--timeout", "1s"],
                                f"mqpool status: no broker answered at {endpoint} within 1000 ms")
            elapsed = time.monotonic() - t0
            self.assertGreaterEqual(elapsed, 0.9)
            self.assertLess(elapsed, 10)

    def test_bad_options_are_refused(self):
        self.assert_refused(["status", "--connect", "foo"], "--connect foo", "not an endpoint")
        self.assert_refused(["status", "--connect", "tcp://127.0.0.1:99999"], "above 65535")
        self.assert_refused(["status", "--connect", "tcp://127.0.0.1:1", "--timeout", "later"],
                            "--timeout", "later")
        self.assert_refused(["status", "--connect", "tcp://127.0.0.1:1", "--timeout", "0"],
                            "--timeout 0")

    def test_a_real_broker_reports_its_worker(self):
        """End to end: `mqpool broker`, a `mqpool worker` that says it connected, and
        `mqpool status` that shows that worker with its executors."""
        front, back = self.real_broker()
        worker = self.spawn(MQPOOL, "worker", "--connect", back, "--processes", "2")
        line = read_line(worker)
        self.assertRegex(line, r"^mqpool worker: connected to " + re.escape(back) +
                         r" as \S+ \(pid \d+\): 2 executors, tasks: .*mqpool\.exec")
        deadline = time.monotonic() + DEADLINE
        while True:  # the executors register a moment after their agent
            code, out, err = mqpool("status", "--connect", front, "--json")
            self.assertEqual(code, 0, err)
            report = json.loads(out)
            if report["workers"] and report["workers"][0]["executors"] == 2:
                break
            self.assertLess(time.monotonic(), deadline, f"status never showed 2 executors: {out}")
            time.sleep(0.05)
        self.assertEqual(len(report["workers"]), 1)
        self.assertEqual(report["workers"][0]["pid"], worker.pid)
        self.assertEqual(report["workers"][0]["busy"], 0)
        self.assertEqual(report["clients"], [], "asking for status made a client")
        code, out, err = mqpool("status", "--connect", front)
        self.assertEqual(code, 0, err)
        self.assertIn(str(worker.pid), out)
        # The worker's SIGTERM: it drains and exits 0.
        worker.send_signal(signal.SIGTERM)
        self.assertEqual(worker.wait(timeout=DEADLINE), 0)

    def test_status_on_the_worker_endpoint_says_so(self):
        _, back = self.real_broker()
        code, out, err = mqpool("status", "--connect", back)
        self.assertEqual(code, 1)
        self.assert_one_line_error(err, "--frontend")

    def test_watch_redraws_until_sigint_then_exits_0(self):
        fake, endpoint = self.fake("answers", "10")
        proc = self.spawn(MQPOOL, "status", "--connect", endpoint, "--json", "--watch",
                          "--timeout", "10s")
        t0 = time.monotonic()
        first = json.loads(read_line(proc))
        second = json.loads(read_line(proc))
        self.assertEqual(first, CANNED)
        self.assertEqual(second, CANNED)
        self.assertGreaterEqual(time.monotonic() - t0, 0.5, "not one second apart")
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(timeout=DEADLINE), 0)


Z85 = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}\n")


class Keys(Case):
    """CURVE from the command line: keygen, the broker's checks and warning, and the
    clients and workers that are admitted or refused (docs/SECURITY.md)."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.authorized = os.path.join(self.dir.name, "authorized")
        os.mkdir(self.authorized)

    def keygen(self, name, admit=None):
        """A key pair; `admit`: the subdirectory of the authorized keys ("" for the
        directory itself: both endpoints; "clients", "workers": that endpoint only)."""
        base = os.path.join(self.dir.name, name)
        code, out, err = mqpool("keygen", base)
        self.assertEqual(code, 0, err)
        if admit is not None:
            where = os.path.join(self.authorized, admit)
            os.makedirs(where, exist_ok=True)
            with open(base + ".pub") as src, open(os.path.join(where, name + ".pub"), "w") as dst:
                dst.write(src.read())
        return base + ".key", base + ".pub"

    def curve_broker(self, *more):
        secret, public = self.keygen("broker")
        broker = self.spawn(MQPOOL, "broker", "--frontend", "tcp://127.0.0.1:*", "--backend",
                            "tcp://127.0.0.1:*", "--curve-secret", secret, "--authorized-keys",
                            self.authorized, *more)
        m = re.fullmatch(r"mqpool broker: clients on (\S+), workers on (\S+)\n", read_line(broker))
        self.assertIsNotNone(m)
        return m.group(1), m.group(2), public

    def test_keygen_writes_a_pair_of_z85_lines_with_their_modes_and_never_replaces_one(self):
        secret, public = self.keygen("alice")
        for path, mode in ((secret, 0o600), (public, 0o644)):
            with open(path) as f:
                self.assertRegex(f.read(), Z85)
            self.assertEqual(os.stat(path).st_mode & 0o777, mode & ~current_umask(), path)
        with open(secret) as f:
            before = f.read()
        for existing in (secret, public):
            other = public if existing == secret else secret
            os.rename(other, other + ".away")  # only one of the two is there
            err = self.assert_refused(["keygen", existing[:-4]], existing, "refusing to replace")
            self.assertFalse(os.path.exists(other), f"{other} written beside {existing}: {err}")
            os.rename(other + ".away", other)
        with open(secret) as f:
            self.assertEqual(f.read(), before)
        self.assert_refused(["keygen", os.path.join(self.dir.name, "no", "such")],
                            "No such file or directory")

    def test_the_broker_refuses_half_or_broken_curve_settings(self):
        secret, public = self.keygen("broker")
        junk = os.path.join(self.dir.name, "junk.key")
        with open(junk, "w") as f:
            f.write("not a key\n")
        eps = ["broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*"]
        self.assert_refused(eps + ["--curve-secret", secret], "--authorized-keys",
                            "would admit every key")
        self.assert_refused(eps + ["--authorized-keys", self.authorized], "--curve-secret")
        self.assert_refused(eps + ["--curve-secret", secret, "--authorized-keys",
                                   os.path.join(self.dir.name, "none")], "not a directory")
        self.assert_refused(eps + ["--curve-secret", junk, "--authorized-keys", self.authorized],
                            "junk.key", "not a CurveZMQ key")
        self.assert_refused(eps + ["--curve-secret", secret, "--authorized-keys", self.authorized,
                                   "--insecure"], "--insecure")
        self.assert_refused(eps + ["--max-message", "1K"], "--max-message", "64K")
        self.assert_refused(eps + ["--max-message", "lots"], "--max-message 'lots'")

    def broker_stderr(self, *args):
        """What a broker bound with `args` says on stderr before its SIGTERM."""
        proc = self.spawn(MQPOOL, "broker", *args)
        self.assertIn("mqpool broker: clients on", read_line(proc))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=DEADLINE), 0)
        return proc.stderr.read()

    def test_a_broker_open_beyond_loopback_without_curve_warns_unless_insecure(self):
        wide = ["--frontend", "tcp://0.0.0.0:*", "--backend", "tcp://127.0.0.1:*"]
        self.assertIn("CURVE is off", self.broker_stderr(*wide))
        self.assertNotIn("CURVE is off", self.broker_stderr(*wide, "--insecure"))
        self.assertNotIn("CURVE is off", self.broker_stderr("--frontend", "tcp://127.0.0.1:*",
                                                            "--backend", "tcp://127.0.0.1:*"))

    def test_admitted_keys_get_status_and_run_jobs_and_unknown_keys_are_refused(self):
        alice = self.keygen("alice", admit="clients")
        mallory = self.keygen("mallory")
        wkey = self.keygen("worker", admit="workers")
        both = self.keygen("both", admit="")
        front, back, broker_pub = self.curve_broker()
        worker = self.spawn(MQPOOL, "worker", "--connect", back, "--processes", "1",
                            "--curve-secret", wkey[0], "--broker-key", broker_pub)
        self.assertIn("mqpool worker: connected", read_line(worker))
        keys = lambda k: ["--curve-secret", k[0], "--broker-key", broker_pub]
        code, out, err = mqpool("status", "--connect", front, "--json", *keys(alice))
        self.assertEqual(code, 0, err)
        self.assertEqual(len(json.loads(out)["workers"]), 1)
        code, out, err = mqpool("run", "--connect", front, *keys(alice), "--", "echo", "got",
                                "{}", input="a\nb\n")
        self.assertEqual((code, out), (0, "got a\ngot b\n"), err)

        self.assert_refused(["status", "--connect", front, *keys(mallory)],
                            "the broker refused this key")
        self.assert_refused(["status", "--connect", front], "CURVE")  # no keys at all
        code, out, err = mqpool("run", "--connect", front, *keys(mallory), "--", "echo", "{}",
                                input="a\n")
        self.assertEqual(code, 255, err)
        self.assertIn("the broker refused this key", err)
        self.assertEqual(out, "")
        # A key admitted on one endpoint only is refused on the other one.
        for key in (mallory, alice):
            code, out, err = mqpool("worker", "--connect", back, *keys(key))
            self.assertEqual(code, 1, key)
            self.assertIn("the broker refused this key", err)
        self.assert_refused(["status", "--connect", front, *keys(wkey)],
                            "the broker refused this key")
        code, out, err = mqpool("status", "--connect", front, *keys(both))
        self.assertEqual(code, 0, err)


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    MQPOOL, FAKE, VERSION = sys.argv[1:4]
    unittest.main(argv=[sys.argv[0]] + sys.argv[4:], verbosity=2)
