#!/usr/bin/env python3
"""mqpool cluster tests with real network namespaces (issue 10, deliverable 10).

Each scenario builds its own topology: a Linux bridge in the root namespace and one
network namespace per host (broker, w1, w2, client, client2), each joined to the bridge
by a veth pair, on a private /24 that clashes with no address or route of this machine.
The bridge has no address, and the namespaces have no route but their /24, so the
test's traffic stays between the namespaces it made. Every process runs under
`unshare --uts` with its host's name as hostname, so the task's answer says which host
served it. `mqpool broker` binds tcp://BROKER_ADDR:* for both endpoints (the ports are
read back from its start line); each worker host runs one `mqpool worker --processes 2
--load TASKS.so`; the client is mqpool_cluster_client, which checks every answer.

Scenarios (positional arguments; default: all):
  both_hosts      both worker hosts serve a map
  host_killed     SIGKILL every process of w1 at 30 % of a map; the job finishes on w2
  broker_restart  SIGKILL the broker at 30 % and restart it on the same endpoints
  link_cut        w1's link down for 8 s at 30 %: the job finishes on w2 before the link
                  is back (its tasks retried within the heartbeat expiry), then w1
                  rejoins (the same client's second job, other indices, served by both)
  two_clients     two clients (hosts client and client2) released at once: both right,
                  and each gets at least 10 % of the results while both jobs run
  run_jobs        `mqpool run --connect` from the client host: outputs in input order,
                  both worker hosts serve, the joblog names the host of each job

Exit status: 0 all passed; 1 a scenario failed; 2 bad usage; 77 skipped (not root, no
ip/unshare, or network namespaces not permitted here).

Names carry this process's pid (namespaces mqnt-PID-HOST, links mqntPIDbr/hN/pN), so
concurrent runs cannot clash; leftovers of runs whose process is gone are removed at
start. Everything is torn down in a finally (SIGTERM, SIGINT and SIGHUP too), and a
reaper process left behind at start tears down this run's namespaces, links and
iptables rule if this script is killed outright (SIGKILL, e.g. by CTest's timeout).
"""

import argparse
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SKIP = 77
PREFIX = "mqnt"
HOSTS = ["broker", "w1", "w2", "client", "client2"]
WORKER_HOSTS = ["w1", "w2"]
SCENARIOS = ["both_hosts", "host_killed", "broker_restart", "link_cut", "two_clients",
             "run_jobs"]

# Client settings: short client heartbeats so that a lost broker is noticed quickly.
CLIENT_HEARTBEAT_MS = 250
CLIENT_LIVENESS = 3
CLIENT_RECONNECT_TIMEOUT_MS = 30000
CLIENT_DEADLINE_S = 45        # the client's own deadline for one job
WAIT_HOSTS_TIMEOUT_S = 20     # readiness barrier: both worker hosts answer probes
CUT_SECONDS = 8.0
REJOIN_TIMEOUT_S = 30         # link_cut: w1 must serve again within this after the cut
TRIGGER_FRACTION = 0.30       # act mid-map once this share of the results arrived
MIN_SHARE = 0.10              # two_clients: each client's least share while both jobs run

T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.2f}] {msg}", flush=True)


class Skip(Exception):
    pass


class Failure(Exception):
    pass


class Interrupted(BaseException):
    """A signal or the overall budget: stop, tear down, fail."""


def sh(args, check=True, timeout=20):
    """Runs a short command (ip, iptables...) with a deadline."""
    try:
        r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"`{' '.join(args)}` did not finish within {timeout} s")
    if check and r.returncode != 0:
        raise Failure(f"`{' '.join(args)}` failed (rc {r.returncode}): "
                      f"{(r.stderr or r.stdout).strip()}")
    return r


# ----------------------------------------------------------------------------- names

class Names:
    """Every name this run creates carries its run id (the pid, 7 digits)."""

    def __init__(self, run_id):
        self.run_id = run_id
        self.bridge = f"{PREFIX}{run_id}br"

    def ns(self, host):
        return f"{PREFIX}-{self.run_id}-{host}"

    def veth(self, index):   # root-namespace end, on the bridge
        return f"{PREFIX}{self.run_id}h{index}"

    def peer(self, index):   # the namespace end (renamed eth0 once inside)
        return f"{PREFIX}{self.run_id}p{index}"


NS_RE = re.compile(rf"^{PREFIX}-(\d{{7}})-[\w-]+$")
LINK_RE = re.compile(rf"^{PREFIX}(\d{{7}})(br|h\d+|p\d+)$")
RULE_RE = re.compile(rf"-i ({PREFIX}(\d{{7}})br) -o \1 -j ACCEPT")


def list_netns():
    r = sh(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def list_links():
    r = sh(["ip", "-o", "link", "show"], check=False)
    out = []
    for line in r.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            out.append(parts[1].strip().split("@")[0])
    return out


def ns_pids(ns):
    r = sh(["ip", "netns", "pids", ns], check=False, timeout=10)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def kill_namespace(ns, timeout=10.0):
    """SIGKILLs every process in `ns` until none is left; returns how many were killed."""
    killed = set()
    end = time.monotonic() + timeout
    while True:
        pids = [p for p in ns_pids(ns) if p != os.getpid()]
        if not pids:
            return len(killed)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
                killed.add(p)
            except ProcessLookupError:
                pass
        if time.monotonic() > end:
            raise Failure(f"processes {pids} in {ns} survived SIGKILL for {timeout} s")
        time.sleep(0.02)  # polling a condition (the namespace is empty), with a deadline


def iptables_available():
    return shutil.which("iptables") is not None


def iptables_rule(bridge):
    return ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]


def cleanup_run(names):
    """Removes whatever of run `names` exists: processes, namespaces, links, the rule."""
    for ns in list_netns():
        if ns.startswith(f"{PREFIX}-{names.run_id}-"):
            try:
                kill_namespace(ns)
            except Failure as e:
                log(f"cleanup: {e}")
            sh(["ip", "netns", "del", ns], check=False)
    for link in list_links():
        m = LINK_RE.match(link)
        if m and m.group(1) == names.run_id and m.group(2) != "br":
            sh(["ip", "link", "del", link], check=False)
    if names.bridge in list_links():
        sh(["ip", "link", "del", names.bridge], check=False)
    if iptables_available():
        for _ in range(10):  # the rule could have been inserted more than once
            r = sh(["iptables", "-w", "5", "-D", *iptables_rule(names.bridge)], check=False)
            if r.returncode != 0:
                break


def owner_alive(run_id):
    pid = int(run_id)
    if pid == os.getpid():
        return False  # a leftover of an earlier run that had this pid
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"netns_test.py" in f.read()
    except OSError:
        return False


def clean_leftovers():
    """Removes namespaces, links and iptables rules of our prefix whose run is gone."""
    ids = set()
    for ns in list_netns():
        m = NS_RE.match(ns)
        if m:
            ids.add(m.group(1))
    for link in list_links():
        m = LINK_RE.match(link)
        if m:
            ids.add(m.group(1))
    if iptables_available():
        r = sh(["iptables", "-w", "5", "-S", "FORWARD"], check=False)
        for line in r.stdout.splitlines():
            m = RULE_RE.search(line)
            if m:
                ids.add(m.group(2))
    for run_id in sorted(ids):
        if not owner_alive(run_id):
            log(f"removing leftovers of run {run_id}")
            cleanup_run(Names(run_id))


def start_reaper(names):
    """Forks a detached process that tears this run down if we die without doing so.

    It holds the read end of a pipe whose write end only this process has (not
    inherited by the processes we start): EOF without "clean" means we were killed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            os.close(w)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.closerange(3, r)
            os.closerange(r + 1, 65536)
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
                signal.signal(s, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            data = b""
            while True:
                chunk = os.read(r, 64)
                if not chunk:
                    break
                data += chunk
            if b"clean" not in data:
                cleanup_run(names)
        except BaseException:
            pass
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    os.close(r)
    return w


# -------------------------------------------------------------------------- topology

def used_networks():
    nets = []
    for args in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
        for line in sh(args, check=False).stdout.splitlines():
            for tok in line.split():
                if tok == "default":
                    break
                try:
                    nets.append(ipaddress.ip_network(tok, strict=False))
                    break
                except ValueError:
                    continue
    return nets


def choose_subnet(run_id):
    used = used_networks()
    start = int(run_id) % 256
    for k in range(256):
        net = ipaddress.ip_network(f"10.231.{(start + k) % 256}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise Failure("no free /24 in 10.231.0.0/16 on this machine")


def disable_ipv6(dev, ns=None):
    cmd = ["sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.disable_ipv6=1"]
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    if shutil.which("sysctl"):
        sh(cmd, check=False)


class Topology:
    """The bridge, one namespace per host, and the iptables rule, made and removed."""

    def __init__(self, names, subnet):
        self.names = names
        self.subnet = subnet
        hosts = list(subnet.hosts())
        self.addrs = {"broker": hosts[0], "w1": hosts[10], "w2": hosts[11],
                      "client": hosts[20], "client2": hosts[21]}
        self.index = {h: i for i, h in enumerate(HOSTS)}
        self.rule_added = False

    def ns(self, host):
        return self.names.ns(host)

    def addr(self, host):
        return str(self.addrs[host])

    def veth(self, host):
        return self.names.veth(self.index[host])

    def up(self):
        n = self.names
        sh(["ip", "link", "add", n.bridge, "type", "bridge"])
        disable_ipv6(n.bridge)
        sh(["ip", "link", "set", n.bridge, "up"])
        for host in HOSTS:
            i = self.index[host]
            ns = n.ns(host)
            sh(["ip", "netns", "add", ns])
            sh(["ip", "link", "add", n.veth(i), "type", "veth", "peer", "name", n.peer(i)])
            disable_ipv6(n.veth(i))
            sh(["ip", "link", "set", n.peer(i), "netns", ns])
            sh(["ip", "link", "set", n.veth(i), "master", n.bridge, "up"])
            inside = ["ip", "netns", "exec", ns]
            sh(inside + ["ip", "link", "set", n.peer(i), "name", "eth0"])
            disable_ipv6("eth0", ns)
            sh(inside + ["ip", "addr", "add", f"{self.addrs[host]}/{self.subnet.prefixlen}",
                         "dev", "eth0"])
            sh(inside + ["ip", "link", "set", "lo", "up"])
            sh(inside + ["ip", "link", "set", "eth0", "up"])
        if iptables_available():
            # Where dockerd ran, FORWARD's policy is DROP and bridged traffic passes
            # iptables (br_netfilter): let this bridge's own traffic through.
            r = sh(["iptables", "-w", "5", "-I", *iptables_rule(n.bridge)], check=False)
            if r.returncode == 0:
                self.rule_added = True
            else:
                log(f"warning: could not add the iptables rule: {r.stderr.strip()}")
        log(f"topology up: bridge {n.bridge}, subnet {self.subnet}, " +
            ", ".join(f"{h}={self.addrs[h]}" for h in HOSTS))

    def kill_all(self):
        for host in HOSTS:
            if self.ns(host) in list_netns():
                try:
                    kill_namespace(self.ns(host))
                except Failure as e:
                    log(f"teardown: {e}")

    def down(self):
        n = self.names
        self.kill_all()
        for host in HOSTS:
            sh(["ip", "netns", "del", n.ns(host)], check=False)
        links = list_links()
        for host in HOSTS:
            for dev in (n.veth(self.index[host]), n.peer(self.index[host])):
                if dev in links:
                    sh(["ip", "link", "del", dev], check=False)
        if n.bridge in links:
            sh(["ip", "link", "del", n.bridge], check=False)
        if self.rule_added:
            sh(["iptables", "-w", "5", "-D", *iptables_rule(n.bridge)], check=False)
            self.rule_added = False
        left = [x for x in list_netns() if x.startswith(f"{PREFIX}-{n.run_id}-")]
        left += [x for x in list_links()
                 if LINK_RE.match(x) and LINK_RE.match(x).group(1) == n.run_id]
        if left:
            log(f"teardown: still present after removal: {left}")
        return not left


# ------------------------------------------------------------------------- processes

class Proc:
    """A process started in a host's namespace under its own hostname (unshare --uts).

    stdout is read line by line by a thread (kept, timestamped, and copied to NAME.out);
    stderr goes to NAME.err."""

    def __init__(self, name, topo, host, argv, logdir, env, stdin=False):
        self.name, self.host, self.argv = name, host, argv
        self.out_path = os.path.join(logdir, f"{name}.out")
        self.err_path = os.path.join(logdir, f"{name}.err")
        self.lines = []            # (monotonic time, line)
        self.cv = threading.Condition()
        self.eof = False
        cmd = ["ip", "netns", "exec", topo.ns(host), "unshare", "--uts", "--",
               "sh", "-c", 'hostname "$0" && exec "$@"', host, *argv]
        self.err_file = open(self.err_path, "wb")
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE,
                                  stderr=self.err_file, start_new_session=True, env=env)
        self.started = time.monotonic()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        with open(self.out_path, "w") as out:
            for raw in self.p.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                t = time.monotonic()
                out.write(f"{t - T0:8.3f} {line}\n")
                out.flush()
                with self.cv:
                    self.lines.append((t, line))
                    self.cv.notify_all()
        with self.cv:
            self.eof = True
            self.cv.notify_all()

    def alive(self):
        return self.p.poll() is None

    def send_line(self, text):
        try:
            self.p.stdin.write((text + "\n").encode())
            self.p.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def wait_line(self, pred, timeout, what, must=True):
        """The first line (from the start) for which pred(line) is truthy -> (time, value).

        Raises Failure on timeout or if the process ends first (returns None if not must)."""
        end = time.monotonic() + timeout
        seen = 0
        with self.cv:
            while True:
                for t, line in self.lines[seen:]:
                    v = pred(line)
                    if v:
                        return t, v
                seen = len(self.lines)
                if self.eof:
                    try:
                        self.p.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
                    if not must:
                        return None
                    raise Failure(f"{self.name} ended (rc {self.p.returncode}) before {what}")
                left = end - time.monotonic()
                if left <= 0:
                    if not must:
                        return None
                    raise Failure(f"{self.name}: no {what} within {timeout:.0f} s")
                self.cv.wait(left)

    def wait_exit(self, timeout):
        """The exit status, or None if still running after `timeout` seconds."""
        try:
            rc = self.p.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            return None
        self.reader.join(timeout=5)
        return rc

    def find(self, pattern):
        rx = re.compile(pattern)
        with self.cv:
            return [(t, line) for t, line in self.lines if rx.search(line)]

    def kill(self):
        if self.p.stdin:
            try:
                self.p.stdin.close()
            except OSError:
                pass
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log(f"teardown: {self.name} (pid {self.p.pid}) did not die")
        self.reader.join(timeout=5)
        self.err_file.close()


def progress_at_least(k):
    rx = re.compile(r"^progress (\d+)/(\d+)")

    def pred(line):
        m = rx.match(line)
        return int(m.group(1)) if m and int(m.group(1)) >= k else None
    return pred


def last_progress(proc):
    p = proc.find(r"^progress \d+/")
    return int(re.match(r"progress (\d+)", p[-1][1]).group(1)) if p else 0


def tail(path, n):
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        return f"    (cannot read {path}: {e})\n"
    cut = lines[-n:]
    head = f"    ... {len(lines) - n} earlier lines in {path}\n" if len(lines) > n else ""
    return head + "".join("    " + x for x in cut)


def client_digest(path, last=10):
    """A client's stdout without its progress lines, except the last few."""
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        return f"    (cannot read {path}: {e})\n"
    prog = [i for i, x in enumerate(lines) if x.split(None, 1)[-1].startswith("progress ")]
    keep = set(prog[-last:])
    out, skipped = [], 0
    for i, x in enumerate(lines):
        if i in prog and i not in keep:
            skipped += 1
            continue
        if skipped:
            out.append(f"    ... {skipped} progress lines\n")
            skipped = 0
        out.append("    " + x)
    return "".join(out)


# -------------------------------------------------------------------------- scenario

class Cluster:
    """One scenario's world: topology, broker, workers, clients; all torn down by close()."""

    def __init__(self, args, names, logdir, env):
        self.args, self.names, self.logdir, self.env = args, names, logdir, env
        self.topo = Topology(names, choose_subnet(names.run_id))
        self.procs = []
        self.counts = {}
        self.frontend = self.backend = None
        self.broker = None
        self.workers = {}

    def start(self, name, host, argv, stdin=False):
        k = self.counts.get(name, 0) + 1
        self.counts[name] = k
        p = Proc(name if k == 1 else f"{name}.{k}", self.topo, host, argv, self.logdir, self.env,
                 stdin)
        self.procs.append(p)
        return p

    def up(self):
        self.topo.up()
        self.start_broker()
        for host in WORKER_HOSTS:
            self.start_worker(host)

    def start_broker(self):
        a = self.topo.addr("broker")
        fe = self.frontend or f"tcp://{a}:*"
        be = self.backend or f"tcp://{a}:*"
        argv = [self.args.mqpool, "broker", "--frontend", fe, "--backend", be]
        argv += self.args.broker_extra
        self.broker = self.start("broker", "broker", argv)
        rx = re.compile(r"clients on (tcp://\S+), workers on (tcp://\S+)")
        _, m = self.broker.wait_line(rx.search, 15, "its start line")
        if self.frontend is None:
            self.frontend, self.backend = m.group(1), m.group(2)
            log(f"broker up: clients on {self.frontend}, workers on {self.backend}")
        elif (m.group(1), m.group(2)) != (self.frontend, self.backend):
            raise Failure(f"restarted broker bound {m.group(1)}, {m.group(2)}, not the first "
                          f"run's {self.frontend}, {self.backend}")
        else:
            log("broker restarted on the same endpoints")

    def start_worker(self, host):
        argv = [self.args.mqpool, "worker", "--connect", self.backend, "--processes",
                str(self.args.processes), "--load", self.args.tasks] + self.args.worker_extra
        self.workers[host] = self.start(f"worker-{host}", host, argv)

    def client(self, host, label, n, ms, min_hosts, mode="imap", wait_hosts=2,
               wait_timeout=WAIT_HOSTS_TIMEOUT_S, expect=WORKER_HOSTS, jobs=1, hold=False):
        deadline = jobs * (CLIENT_DEADLINE_S + (wait_timeout if wait_hosts else 0))
        argv = [self.args.client, "--connect", self.frontend, "-n", str(n), "--ms", str(ms),
                "--mode", mode, "--min-hosts", str(min_hosts),
                "--expect-hosts", ",".join(expect),
                "--wait-hosts", str(wait_hosts), "--wait-timeout", str(wait_timeout),
                "--deadline", str(deadline),
                "--heartbeat-ms", str(CLIENT_HEARTBEAT_MS), "--liveness", str(CLIENT_LIVENESS),
                "--reconnect-timeout-ms", str(CLIENT_RECONNECT_TIMEOUT_MS),
                "--label", label, "--jobs", str(jobs)] + (["--hold"] if hold else [])
        c = self.start(f"client-{label}", host, argv, stdin=hold)
        c.n, c.deadline, c.wait_timeout = n, deadline, wait_timeout
        return c

    def held(self, c, job, timeout):
        """Waits until the client holds before `job` (its hosts answered); -> the time."""
        t, _ = c.wait_line(lambda l: l.startswith(f"hold: job {job} ready"), timeout,
                           f"the hold before job {job}")
        return t

    def job_started(self, c):
        """Waits for the client's readiness barrier and job start."""
        c.wait_line(lambda l: l.startswith("job 1: started"),
                    c.wait_timeout + 15, "the job's start (both worker hosts ready)")

    def finish(self, c):
        """Waits for the client and checks its verdict; returns {job: {host: count}}."""
        timeout = c.deadline + 15   # the client's own deadline ends it before this
        rc = c.wait_exit(timeout)
        if rc is None:
            c.kill()
            raise Failure(f"{c.name} still running after {timeout} s (its own deadline "
                          f"did not end it); last progress {last_progress(c)}/{c.n}")
        summary = c.find(r"^summary:")
        line = summary[-1][1] if summary else "(no summary line)"
        if rc != 0 or not line.startswith("summary: OK"):
            detail = [l for _, l in c.find(r"^(problem|error|deadline|exception|ready: FAILED|"
                                           r"job \d+: FAILED)")][:8]
            raise Failure(f"{c.name} rc {rc}: {line}" + "".join(f"\n      {d}" for d in detail))
        hosts = {}
        for _, l in c.find(r"^hosts \d+:"):
            job = int(l.split()[1].rstrip(":"))
            hosts[job] = {h: int(k) for h, k in (x.split("=") for x in l.split()[2:])}
        log(f"{c.name}: {line[len('summary: '):]}; " +
            "; ".join(l for _, l in c.find(r"^hosts \d+:")))
        return hosts

    def expect_alive(self, *procs):
        for p in procs:
            if not p.alive():
                raise Failure(f"{p.name} exited (rc {p.p.returncode}) unexpectedly")

    def kill_host(self, host):
        n = kill_namespace(self.topo.ns(host))
        for p in self.procs:
            if p.host == host:
                p.kill()
        return n

    def print_logs(self):
        print(f"---- logs of the failed scenario (in {self.logdir})", flush=True)
        for p in self.procs:
            rc = p.p.returncode
            print(f"-- {p.name} on {p.host} (pid {p.p.pid}, rc {rc}): {' '.join(p.argv)}")
            if p.name.startswith("client"):
                print(f"   stdout ({p.out_path}), all but the first progress lines:")
                print(client_digest(p.out_path), end="")
            elif os.path.exists(p.out_path) and os.path.getsize(p.out_path) > 0:
                print("   stdout:")
                print(tail(p.out_path, 20), end="")
            print(f"   stderr ({p.err_path}):")
            print(tail(p.err_path, 120), end="")
        sys.stdout.flush()

    def close(self):
        ok = True
        for p in self.procs:
            if p.alive():
                try:
                    os.killpg(p.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.topo.kill_all()
        for p in self.procs:
            p.kill()
        if not self.topo.down():
            ok = False
        return ok


def at_trigger(cl, c):
    """Waits until the client passes TRIGGER_FRACTION of its job; returns the count."""
    cl.job_started(c)
    _, k = c.wait_line(progress_at_least(max(1, int(c.n * TRIGGER_FRACTION))), CLIENT_DEADLINE_S,
                       f"{int(TRIGGER_FRACTION * 100)} % progress")
    return k


def sc_both_hosts(cl):
    c = cl.client("client", "main", n=200, ms=5, min_hosts=2)
    hosts = cl.finish(c)[1]
    if set(hosts) != set(WORKER_HOSTS):
        raise Failure(f"served by {sorted(hosts)}, expected both {WORKER_HOSTS}")
    cl.expect_alive(cl.broker, *cl.workers.values())


def sc_host_killed(cl):
    c = cl.client("client", "main", n=400, ms=10, min_hosts=1)
    k = at_trigger(cl, c)
    t = time.monotonic()
    killed = cl.kill_host("w1")
    log(f"w1: SIGKILLed {killed} processes at progress {k}/{c.n}")
    if killed < 1 + cl.args.processes:
        raise Failure(f"only {killed} processes were running in w1 (agent + "
                      f"{cl.args.processes} executors expected)")
    hosts = cl.finish(c)[1]
    log(f"job finished {time.monotonic() - t:.2f} s after the kill")
    if not hosts.get("w1"):
        raise Failure("w1 served nothing before it was killed: the kill was not mid-map")
    if not hosts.get("w2"):
        raise Failure("w2 served nothing")
    cl.expect_alive(cl.broker, cl.workers["w2"])


def sc_broker_restart(cl):
    c = cl.client("client", "main", n=400, ms=10, min_hosts=1)
    k = at_trigger(cl, c)
    old = cl.broker
    killed = kill_namespace(cl.topo.ns("broker"))
    old.kill()
    log(f"broker SIGKILLed ({killed} process) at progress {k}/{c.n}, rc {old.p.returncode}")
    t = time.monotonic()
    cl.start_broker()
    try:
        cl.finish(c)
    except Failure as e:
        # Diagnosis: do the workers serve the restarted broker? A fresh client tells
        # "the client did not resubmit" apart from "the workers did not come back".
        probe = cl.client("client2", "probe", n=20, ms=1, min_hosts=2, wait_timeout=10)
        try:
            cl.finish(probe)
            verdict = "a fresh client is served by both worker hosts (they reconnected)"
        except Failure as pe:
            verdict = f"a fresh client is not served by both worker hosts either: {pe}"
        raise Failure(f"{e}\n      diagnosis: {verdict}")
    log(f"job finished {time.monotonic() - t:.2f} s after the restart")
    cl.expect_alive(cl.broker, *cl.workers.values())


def sc_link_cut(cl):
    # One client, two jobs in one pool. Job 1 is small enough that w2 alone finishes the
    # remaining 70 % well within the cut, even on a shared CPU, once w1's tasks come back
    # after the heartbeat expiry (3 s): it must end while the link is still down. Job 2
    # (other indices, so that a stale answer of job 1 is caught) is released once the
    # link is back and both hosts answer probes again, and must be served by both: w1
    # rejoined, and its stale DONEs of job 1 did not disturb the client.
    c = cl.client("client", "main", n=200, ms=10, min_hosts=2, jobs=2, hold=True,
                  wait_timeout=REJOIN_TIMEOUT_S)
    cl.held(c, 1, REJOIN_TIMEOUT_S + 15)
    c.send_line("go")
    k = at_trigger(cl, c)
    veth = cl.topo.veth("w1")
    sh(["ip", "link", "set", veth, "down"])
    t_cut = time.monotonic()
    log(f"w1's link ({veth}) down at progress {k}/{c.n}")
    problems = []
    try:
        ended = c.wait_line(lambda l: re.match(r"^job 1: (OK|FAILED)", l), CUT_SECONDS,
                            "job 1's end", must=False)
        at_restore = last_progress(c)
        # The cut lasts CUT_SECONDS whatever the job does: it is the scenario.
        time.sleep(max(0.0, t_cut + CUT_SECONDS - time.monotonic()))
    finally:
        sh(["ip", "link", "set", veth, "up"])
    t_up = time.monotonic()
    log(f"w1's link up after {t_up - t_cut:.2f} s; progress {at_restore}/{c.n}" +
        (f"; job 1 ended {ended[0] - t_cut:.2f} s into the cut" if ended else
         "; job 1 still running"))
    if not ended:
        problems.append(f"job 1 did not end during the {CUT_SECONDS:.0f} s cut (progress "
                        f"{at_restore}/{c.n} when the link came back, {k} when it went "
                        f"down): w1's tasks were not retried on w2 within the heartbeat expiry")
    try:
        if ended:
            t_ready = cl.held(c, 2, REJOIN_TIMEOUT_S + 15)  # both hosts answer probes again
            if t_ready < t_up:
                raise Failure("both hosts answered probes before w1's link came back")
            log(f"w1 rejoined: both hosts answered probes {t_ready - t_up:.2f} s after the "
                "link came up")
        c.send_line("go")  # job 2
        hosts = cl.finish(c)
        if not hosts.get(1, {}).get("w1"):
            problems.append("w1 served nothing of job 1 before its link was cut")
    except Failure as e:
        problems.append(str(e))
    if problems:
        raise Failure("; ".join(problems))
    cl.expect_alive(cl.workers["w1"], cl.workers["w2"], cl.broker)


def sc_two_clients(cl):
    # Both clients are released at the same instant, once both worker hosts answered each.
    a = cl.client("client", "a", n=300, ms=5, min_hosts=1, mode="imap", hold=True)
    b = cl.client("client2", "b", n=300, ms=5, min_hosts=1, mode="apply", hold=True)
    for c in (a, b):
        cl.held(c, 1, WAIT_HOSTS_TIMEOUT_S + 15)
    t_go = time.monotonic()
    for c in (a, b):
        c.send_line("go")
    errors = []
    for c in (a, b):
        try:
            cl.finish(c)
        except Failure as e:
            errors.append(str(e))
    if errors:
        raise Failure("; ".join(errors))
    # "At once": while both jobs ran (from the release until the first of them ended),
    # each client got a fair part of the results. Served one after the other, the
    # second client gets (almost) nothing until the first client's job has ended.
    t_end = min(c.find(r"^job 1: ended")[0][0] for c in (a, b))
    got = {c.name: sum(1 for t, _ in c.find(r"^progress ") if t <= t_end) for c in (a, b)}
    total = sum(got.values())
    log(f"while both jobs ran ({t_end - t_go:.2f} s after the release): " +
        ", ".join(f"{n} got {k} results" for n, k in got.items()))
    for name, k in got.items():
        if k < MIN_SHARE * total:
            raise Failure(f"{name} got {k} of the {total} results delivered while both jobs "
                          f"ran (less than {MIN_SHARE:.0%}): the clients were not served at once")
    cl.expect_alive(cl.broker, *cl.workers.values())


def sc_run_jobs(cl):
    """`mqpool run --connect` from the client host: each job prints the host it ran on;
    the outputs come in input order, both worker hosts serve, and the joblog's Host
    column agrees with what each job printed."""
    for w in cl.workers.values():
        w.wait_line(lambda l: l.startswith("mqpool worker: connected"), 15, "its connect line")
    items = os.path.join(cl.logdir, "run-items")
    joblog = os.path.join(cl.logdir, "run-joblog.tsv")
    with open(items, "w") as f:
        f.write("".join(f"{i}\n" for i in range(1, 41)))
    c = cl.start("run", "client", [cl.args.mqpool, "run", "--connect", cl.frontend,
                                   "--arg-file", items, "--joblog", joblog, "--", "sh", "-c",
                                   'sleep 0.1; echo "$1 $(uname -n)"', "sh", "{}"])
    rc = c.wait_exit(CLIENT_DEADLINE_S)
    if rc != 0:
        c.kill()
        raise Failure(f"mqpool run rc {rc}: {tail(c.err_path, 5)}")
    got = [l.split() for _, l in c.find(r"^\d+ ")]
    if [g[0] for g in got] != [str(i) for i in range(1, 41)]:
        raise Failure(f"outputs not in input order: {[g[0] for g in got]}")
    printed = {int(g[0]): g[1] for g in got}
    if set(printed.values()) != set(WORKER_HOSTS):
        raise Failure(f"served by {sorted(set(printed.values()))}, expected {WORKER_HOSTS}")
    with open(joblog) as f:
        rows = [r.split("\t") for r in f.read().splitlines()[1:]]
    logged = {int(r[0]): r[1] for r in rows}
    if logged != printed:
        raise Failure(f"joblog hosts {logged} differ from the printed ones {printed}")
    log(f"mqpool run: 40 jobs in order; hosts {sorted(set(printed.values()))}; joblog agrees")
    cl.expect_alive(cl.broker, *cl.workers.values())


SCENARIO_FUNCS = {"both_hosts": sc_both_hosts, "host_killed": sc_host_killed,
                  "broker_restart": sc_broker_restart, "link_cut": sc_link_cut,
                  "two_clients": sc_two_clients, "run_jobs": sc_run_jobs}


# ---------------------------------------------------------------------------- main

def skip_reason(names):
    if os.geteuid() != 0:
        return "not root (network namespaces, veth and bridges need root)"
    for tool in ("ip", "unshare", "sh"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found"
    probe = names.ns("probe")
    r = sh(["ip", "netns", "add", probe], check=False)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    try:
        r = sh(["ip", "netns", "exec", probe, "unshare", "--uts", "--", "sh", "-c",
                "hostname probe && ip link set lo up"], check=False)
        if r.returncode != 0:
            return f"cannot run in a namespace with its own hostname: {r.stderr.strip()}"
        br, v, p = names.bridge, names.veth(9), names.peer(9)
        r = sh(["ip", "link", "add", br, "type", "bridge"], check=False)
        if r.returncode != 0:
            return f"cannot create a bridge: {r.stderr.strip()}"
        r = sh(["ip", "link", "add", v, "type", "veth", "peer", "name", p], check=False)
        if r.returncode != 0:
            return f"cannot create a veth pair: {r.stderr.strip()}"
        return None
    finally:
        for dev in (names.veth(9), names.bridge):
            sh(["ip", "link", "del", dev], check=False)
        sh(["ip", "netns", "del", probe], check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mqpool", required=True, help="the mqpool command")
    ap.add_argument("--client", required=True, help="mqpool_cluster_client")
    ap.add_argument("--tasks", required=True, help="libmqpool_cluster_tasks.so")
    ap.add_argument("--processes", type=int, default=2, help="executors per worker host [2]")
    ap.add_argument("--log-level", default="debug", help="MQPOOL_LOG_LEVEL for every process")
    ap.add_argument("--budget", type=float, default=560,
                    help="overall seconds; past it the run is torn down and fails [560]")
    ap.add_argument("--keep-logs", action="store_true", help="keep the log directory")
    ap.add_argument("scenarios", nargs="*", help=f"any of {SCENARIOS} [all]")
    args = ap.parse_args()
    scenarios = args.scenarios or SCENARIOS
    for s in scenarios:
        if s not in SCENARIO_FUNCS:
            ap.error(f"unknown scenario {s!r}; known: {', '.join(SCENARIOS)}")
    for path in (args.mqpool, args.client, args.tasks):
        if not os.path.exists(path):
            print(f"netns_test: {path} does not exist (build it first)", flush=True)
            return 2
    args.mqpool, args.client, args.tasks = map(os.path.abspath,
                                               (args.mqpool, args.client, args.tasks))

    names = Names(f"{os.getpid():07d}")
    reason = skip_reason(names)
    if reason:
        print(f"netns_test: SKIPPED: {reason}", flush=True)
        return SKIP

    state = {"teardown": False, "pending": None}

    def on_signal(signum, _frame):
        if state["teardown"]:
            log(f"signal {signum} during teardown: finishing the teardown first")
            state["pending"] = signum
            return
        raise Interrupted(f"signal {signal.Signals(signum).name}"
                          if signum != signal.SIGALRM else f"budget of {args.budget:.0f} s spent")

    reaper = start_reaper(names)   # before any thread: it forks
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(s, on_signal)
    signal.alarm(max(1, int(args.budget)))

    def helps(sub):
        r = sh([args.mqpool, sub, "--help"], check=False, timeout=10)
        return "--log-level" in r.stdout + r.stderr
    args.broker_extra = ["--log-level", args.log_level] if helps("broker") else []
    args.worker_extra = ["--log-level", args.log_level] if helps("worker") else []
    env = dict(os.environ, MQPOOL_LOG_LEVEL=args.log_level)

    logroot = tempfile.mkdtemp(prefix="mqpool-netns-")
    results = []
    try:
        clean_leftovers()
        for s in scenarios:
            logdir = os.path.join(logroot, s)
            os.makedirs(logdir)
            log(f"==== {s}")
            t = time.monotonic()
            cl = None
            status, why = "FAIL", ""
            try:
                cl = Cluster(args, names, logdir, env)
                cl.up()
                SCENARIO_FUNCS[s](cl)
                status = "PASS"
            except Failure as e:
                why = str(e)
            except Interrupted as e:
                why = f"interrupted: {e}"
                raise
            except Exception as e:
                why = f"harness error: {e!r}"
                traceback.print_exc()
            finally:
                state["teardown"] = True   # signals wait until this scenario is torn down
                if status != "PASS":
                    log(f"{s}: FAILED: {why}")
                    if cl is not None:
                        cl.print_logs()
                if cl is not None and not cl.close() and status == "PASS":
                    status, why = "FAIL", "the teardown left namespaces or links behind"
                state["teardown"] = False
                secs = time.monotonic() - t
                results.append((s, status, why, secs))
                log(f"{s}: {status} ({secs:.1f} s)")
            if state["pending"] is not None:
                raise Interrupted(f"signal {signal.Signals(state['pending']).name}")
    except Interrupted as e:
        log(f"stopped: {e}")
    finally:
        state["teardown"] = True
        signal.alarm(0)
        cleanup_run(names)
        try:
            os.write(reaper, b"clean")
            os.close(reaper)
        except OSError:
            pass
        print("==== summary", flush=True)
        for s, status, why, secs in results:
            print(f"  {s:15s} {status}  {secs:5.1f} s  {why.splitlines()[0] if why else ''}")
        failed = any(st != "PASS" for _, st, _, _ in results) or len(results) < len(scenarios)
        if not failed and not args.keep_logs:
            shutil.rmtree(logroot, ignore_errors=True)
            where = "logs removed (--keep-logs keeps them)"
        else:
            where = f"logs in {logroot}"
        print(f"  total {time.monotonic() - T0:.1f} s; {where}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
