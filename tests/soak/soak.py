#!/usr/bin/env python3
"""The soak driver (docs/soak.md): owns megakerneld and runs `mkctl soak` against it.

It starts the real megakerneld on 127.0.0.1 port 0 with a tenants file and a resource root in a
temporary folder, runs `mkctl soak` (capacity, then the open loop at --load percent of it with
every tenant) for --duration seconds, and meanwhile injects the server-side faults:
  - files of the resource root go missing, are swapped for a symbolic link, a FIFO or another
    file, or are truncated, and are put back (the client's LOAD_MISS of them then faults);
  - tenants are disabled and enabled again through Admin.SetTenantEnabled;
  - at mid-run one SIGTERM drain (with a tenant disabled, so the drain cancels its parked
    slots), then a new server on a new port, named to mkctl through its --target_file.
At the end it reconciles: mkctl's ledger per incarnation (0 lost, 0 duplicated, ...) against
the server's own final counts (the `stopped:` line), and the server's memory (VmRSS) after
warm-up and at the end of each process (growth below --rss_limit_percent). Exit status 0 when
everything holds, 1 otherwise.

  python3 tests/soak/soak.py --megakerneld=build/server/megakerneld --mkctl=build/client/mkctl \\
      --duration=60

It needs only Python's standard library (admin calls go through `mkctl admin`), so it runs
wherever the two binaries run, the GPU machine's bundle included (docs/soak.md).
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from soak_faults import FileFaults

ADMIN_TOKEN = "soak-admin-token-0123"
RESOURCE_FILES = 4


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--megakerneld", required=True)
    p.add_argument("--mkctl", required=True)
    p.add_argument("--duration", type=float, default=60, help="open-loop seconds")
    p.add_argument("--engine", default="cpu", help="megakerneld --engine (cpu, cuda, auto, ...)")
    p.add_argument("--tenants", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=2, help="mkctl soak --concurrency")
    p.add_argument("--load", type=int, default=80, help="percent of the measured capacity")
    p.add_argument("--resource_kib", type=int, default=256, help="size of each resource file")
    p.add_argument("--rss_limit_percent", type=float, default=10)
    p.add_argument("--warmup", type=float, default=0,
                   help="seconds of open loop before the RSS baseline (0: 25%% of --duration, "
                        "10..60 s: a fresh server's RSS ramps for about 25 s)")
    p.add_argument("--no_restart", action="store_true", help="skip the drain and restart")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", help="keep everything here instead of a temporary folder")
    p.add_argument("--report", help="write the combined report here (JSON)")
    p.add_argument("--server_flag", action="append", default=[],
                   help="one more megakerneld flag (repeatable)")
    args = p.parse_args()
    for name in ("megakerneld", "mkctl"):  # the server runs in the work folder
        setattr(args, name, os.path.abspath(getattr(args, name)))
    return args


def cpu_seconds(pid):
    """utime + stime of a process (/proc/<pid>/stat), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def last_sampled_cpu(sampler, name):
    """The last CPU reading the sampler took of `name` (0.0 when none): for a process that
    exited (and was reaped) before it could be read directly."""
    for sample in reversed(sampler.samples):
        if f"{name}_cpu_s" in sample:
            return sample[f"{name}_cpu_s"]
    return 0.0


class Sampler:
    """Samples the server's RSS and the CPU of the server and mkctl every `period` seconds (the
    report's timeline: is memory flat or climbing, what the soak costs)."""

    def __init__(self, period):
        self.period = period
        self.samples = []
        self.pids = {}  # name -> pid, swapped when the server restarts
        self.server = None  # the Server whose /metrics is read
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.start_time = time.monotonic()

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join()

    def _run(self):
        while not self.stopping.wait(self.period):  # the period paces; stop ends it at once
            sample = {"t": round(time.monotonic() - self.start_time, 1),
                      "loadavg_1m": os.getloadavg()[0]}  # the machine's, others' work included
            for name, pid in list(self.pids.items()):
                try:
                    sample[f"{name}_cpu_s"] = round(cpu_seconds(pid), 2)
                    if name == "server":
                        sample["server_rss_kib"] = rss_kib(pid)
                except (OSError, IndexError):
                    pass  # between processes
            stored = self.server.stored_completions() if self.server else None
            if stored is not None:
                sample["stored_completions"] = stored
            self.samples.append(sample)


def open_cpu(server):
    return {"cpu0": cpu_seconds(server.proc.pid), "t0": time.monotonic()}


def close_cpu(server, mark):
    mark["cpu"] = cpu_seconds(server.proc.pid) - mark["cpu0"]
    mark["wall"] = time.monotonic() - mark["t0"]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class Server:
    """One megakerneld process; a thread keeps reading its output (it must never block)."""

    def __init__(self, args, workdir, tenants_file, root):
        residency = 2 * args.resource_kib * 1024  # two of a tenant's four files: loads evict
        cmd = [args.megakerneld, "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
               f"--engine={args.engine}", f"--tenants_file={tenants_file}",
               f"--resource_root={root}", f"--tenant_residency_bytes={residency}",
               f"--max_tenants={args.tenants + 4}", *args.server_flag]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, cwd=workdir)
        self.lines = []
        self.port = None
        self.metrics_url = None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "listening on 127.0.0.1:" in line:
                self.port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
            if "metrics on " in line:  # printed after the listening line
                self.metrics_url = line.split("metrics on ")[1].split()[0]
                break
        if self.port is None:
            raise RuntimeError("megakerneld did not start:\n" + "\n".join(self.lines))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def target(self):
        return f"127.0.0.1:{self.port}"

    def stored_completions(self):
        """The mk_completions_stored gauge: outcomes waiting for a Poll."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("mk_completions_stored "):
                        return int(float(line.split()[1]))
        except (OSError, ValueError):
            return None  # between processes
        return None

    def stop(self, timeout=120):
        """SIGTERM (a drain); returns the exit code and the `stopped:` counts."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        stopped = [l for l in self.lines if "stopped:" in l]
        counts = {}
        if stopped:
            counts = {k: int(v) for k, v in
                      (kv.split("=") for kv in stopped[-1].split("stopped: ")[1].split())}
        return rc, counts


class Mkctl:
    """`mkctl soak`; a thread reads its output and signals the phases the driver waits for."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            print(line.rstrip(), flush=True)
            with self.cond:
                self.lines.append(line.rstrip())
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # end of output
            self.cond.notify_all()

    def wait_line(self, needle, timeout):
        """Blocks until a line contains `needle` (True) or the output ends / times out."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if any(l is not None and needle in l for l in self.lines):
                    return True
                if None in self.lines:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)

    def wait_until(self, when):
        """Paces the schedule: waits for mkctl to exit until `when` (monotonic). True when it
        exited (early)."""
        left = when - time.monotonic()
        if left <= 0:
            return self.proc.poll() is not None
        try:
            self.proc.wait(timeout=left)
            return True
        except subprocess.TimeoutExpired:
            return False


class Admin:
    """Admin.SetTenantEnabled through `mkctl admin` (the admin token)."""

    def __init__(self, mkctl):
        self.mkctl = mkctl

    def set_enabled(self, target, tenant, enabled):
        flag = f"--{'enable' if enabled else 'disable'}_tenant={tenant}"
        r = subprocess.run([self.mkctl, "admin", f"--target={target}", f"--token={ADMIN_TOKEN}",
                            flag], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"mkctl admin {flag}: {r.stdout}{r.stderr}")


def setup(args, workdir):
    tenants = list(range(1, args.tenants + 1))
    tenants_file = os.path.join(workdir, "tenants.txt")
    with open(tenants_file, "w") as f:
        for t in tenants:
            f.write(f"tenant {t} soak-tenant-token-{t:04d}\n")
        f.write(f"admin {ADMIN_TOKEN}\n")
    root = os.path.join(workdir, "root")
    rng = random.Random(args.seed)
    for t in tenants:
        os.makedirs(os.path.join(root, "tenants", str(t)), exist_ok=True)
        for k in range(RESOURCE_FILES):
            with open(os.path.join(root, "tenants", str(t), f"res{k}.bin"), "wb") as f:
                f.write(rng.randbytes(args.resource_kib * 1024))
    os.makedirs(os.path.join(root, "shared"), exist_ok=True)
    return tenants, tenants_file, root


def write_target(path, target):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(target + "\n")
    os.rename(tmp, path)  # atomic: mkctl sees the old name or the new one


def cross_check(incarnation, counts, problems):
    """mkctl's ledger against the server's own final counts (the startup NOP is the server's
    one extra slot). Every difference in an outcome class must be a ticket whose outcome the
    client gave up by cancelling, and those add up to mkctl's abandoned count."""
    i = incarnation["index"]
    if not counts:
        problems.append(f"incarnation {i}: the server printed no final counts")
        return
    if counts["accepted"] != incarnation["accepted"] + 1:
        problems.append(f"incarnation {i}: the server accepted {counts['accepted'] - 1} tickets, "
                        f"the client knows of {incarnation['accepted']}")
    diffs = {"done": counts["done"] - 1 - incarnation["done"],
             "faulted": counts["faulted"] - incarnation["fault"],
             "cancelled": counts["cancelled"] - incarnation["cancelled_observed"]}
    if min(diffs.values()) < 0 or sum(diffs.values()) != incarnation["abandoned"]:
        problems.append(f"incarnation {i}: server minus client outcomes {diffs} do not add up "
                        f"to the {incarnation['abandoned']} outcomes the client gave up")


def main():
    args = parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="mk_soak_")
    os.makedirs(workdir, exist_ok=True)
    warmup = args.warmup or min(60.0, max(10.0, args.duration / 4))
    tenants, tenants_file, root = setup(args, workdir)
    admin = Admin(args.mkctl)
    target_file = os.path.join(workdir, "target.txt")
    report_file = os.path.join(workdir, "mkctl_report.json")
    problems, servers, rss = [], [], []

    servers.append(Server(args, workdir, tenants_file, root))
    write_target(target_file, servers[-1].target())
    files = [os.path.join(root, "tenants", str(t), f"res{k}.bin")
             for t in tenants for k in range(RESOURCE_FILES)]
    faults = FileFaults(files, period=max(0.5, args.duration / 60), seed=args.seed)
    mkctl = Mkctl([args.mkctl, "soak", f"--tokens_file={tenants_file}",
                   f"--target_file={target_file}", f"--duration={args.duration}s",
                   f"--concurrency={args.concurrency}", f"--load={args.load}",
                   f"--resources={','.join(f'res{k}.bin' for k in range(RESOURCE_FILES))}",
                   f"--seed={args.seed}", f"--report_file={report_file}"])
    started = time.monotonic()
    sampler = Sampler(period=max(1.0, args.duration / 30))
    sampler.pids = {"server": servers[0].proc.pid, "mkctl": mkctl.proc.pid}
    sampler.server = servers[0]
    cpu = []  # per server process: its CPU and wall seconds during the open loop
    mkctl_cpu = mkctl_cpu0 = 0.0
    try:
        if not mkctl.wait_line("soak: open loop at", timeout=120):
            raise RuntimeError("mkctl soak did not reach its open loop")
        t0 = time.monotonic()
        cpu.append(open_cpu(servers[0]))
        mkctl_cpu0 = cpu_seconds(mkctl.proc.pid)
        faults.start()
        sampler.start()
        at = lambda fraction: t0 + fraction * args.duration  # noqa: E731

        def disable_window(fraction, tenant):
            """At `fraction` of the run, disables `tenant` for a while (its publishes are
            refused, its slots in flight park) and enables it again (they run). True when mkctl
            exited meanwhile."""
            if mkctl.wait_until(at(fraction)):
                return True
            admin.set_enabled(servers[-1].target(), tenant, False)
            ended = mkctl.wait_until(time.monotonic() + min(2.0, args.duration / 20))
            admin.set_enabled(servers[-1].target(), tenant, True)
            return ended

        ended = mkctl.wait_until(t0 + warmup)
        rss.append({"process": 0, "warm_kib": rss_kib(servers[0].proc.pid)})
        ended = ended or disable_window(0.2, tenants[1 % len(tenants)])
        if not args.no_restart and not ended:
            ended = mkctl.wait_until(at(0.45))
        if not args.no_restart and not ended:
            # The drain, with the last tenant disabled: the drain cancels its parked slots.
            admin.set_enabled(servers[-1].target(), tenants[-1], False)
            rss[-1]["end_kib"] = rss_kib(servers[-1].proc.pid)
            close_cpu(servers[-1], cpu[-1])
            rc, counts = servers[-1].stop()
            servers[-1].result = (rc, counts)
            servers.append(Server(args, workdir, tenants_file, root))
            sampler.pids["server"] = servers[-1].proc.pid
            sampler.server = servers[-1]
            write_target(target_file, servers[-1].target())
            if not mkctl.wait_line("open loop resumed", timeout=120):
                raise RuntimeError("mkctl soak did not resume against the new server")
            cpu.append(open_cpu(servers[-1]))
            ended = mkctl.wait_until(time.monotonic() + warmup)
            if not ended:
                rss.append({"process": 1, "warm_kib": rss_kib(servers[-1].proc.pid)})
        ended = ended or disable_window(0.75, tenants[2 % len(tenants)])
        # The end of the load: the last samples, then mkctl reconciles (bounded by its settle
        # timeout) and reports.
        mkctl.wait_line("soak: open loop over", timeout=args.duration + 300)
        if len(cpu) == len(servers):
            close_cpu(servers[-1], cpu[-1])
        try:
            mkctl_cpu = cpu_seconds(mkctl.proc.pid) - mkctl_cpu0
        except OSError:  # mkctl exited and was reaped already (a slow machine's end)
            mkctl_cpu = last_sampled_cpu(sampler, "mkctl") - mkctl_cpu0
        if rss and len(rss) == len(servers):
            rss[-1]["end_kib"] = rss_kib(servers[-1].proc.pid)
        mkctl.proc.wait(timeout=300)
    finally:
        sampler.stop()
        faults.stop()
        if mkctl.proc.poll() is None:
            mkctl.proc.kill()
            problems.append("mkctl soak did not finish")
        mkctl.proc.wait()
        for s in servers:
            if not hasattr(s, "result"):
                s.result = s.stop()

    open_loop_s = max(1e-9, sum(c.get("wall", 0) for c in cpu))
    report = {"duration_s": args.duration, "engine": args.engine, "workdir": workdir,
              "wall_s": round(time.monotonic() - started, 1), "mkctl_exit": mkctl.proc.returncode,
              "file_faults": faults.counts, "rss": rss, "servers": [],
              "cpu_cores": {"server": round(sum(c.get("cpu", 0) for c in cpu) / open_loop_s, 2),
                            "mkctl": round(mkctl_cpu / open_loop_s, 2)},
              "timeline": sampler.samples}
    if mkctl.proc.returncode != 0:
        problems.append(f"mkctl soak exited {mkctl.proc.returncode}")
    client = {}
    try:
        with open(report_file) as f:
            client = json.load(f)
    except (OSError, ValueError) as e:
        problems.append(f"no mkctl report: {e}")
    report["client"] = client
    for i, s in enumerate(servers):
        rc, counts = s.result
        report["servers"].append({"exit": rc, "stopped": counts})
        if rc != 0:
            problems.append(f"server {i} exited {rc}:\n" + "\n".join(s.lines[-20:]))
    incarnations = client.get("incarnations", [])
    if len(incarnations) != len(servers):
        problems.append(f"{len(servers)} server processes, {len(incarnations)} incarnations")
    for inc, s in zip(incarnations, servers):
        cross_check(inc, s.result[1], problems)
    for r in rss:
        if "end_kib" not in r:
            problems.append(f"process {r['process']}: no end RSS sample")
            continue
        r["growth_percent"] = round(100.0 * (r["end_kib"] - r["warm_kib"]) / r["warm_kib"], 2)
        if r["growth_percent"] >= args.rss_limit_percent:
            problems.append(f"process {r['process']}: RSS grew {r['growth_percent']}% "
                            f"({r['warm_kib']} -> {r['end_kib']} KiB)")
    if not rss:
        problems.append("no RSS sample (the soak ended before its warm-up)")
    report["problems"] = problems
    print_report(report, client)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    if not args.workdir and not problems:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if problems or client.get("violations", 1) != 0 else 0


def print_report(report, client):
    total = client.get("total", {})
    print("soak driver report")
    print(f"  engine           {report['engine']}, open loop {report['duration_s']} s, "
          f"wall {report['wall_s']} s")
    print(f"  rate             capacity {client.get('capacity_rps', 0):.0f} requests/s, "
          f"target {client.get('target_rps', 0):.0f}, achieved "
          f"{client.get('achieved_rps', 0):.0f}")
    print(f"  tickets          accepted {total.get('accepted')} = done {total.get('done')} + "
          f"fault {total.get('fault')} + cancelled {total.get('cancelled')} + lost "
          f"{total.get('lost')}; duplicated {total.get('duplicated')}")
    print(f"  faults by code   {total.get('faults_by_code')}; io errnos "
          f"{total.get('io_errors_by_errno')}")
    print(f"  file faults      {report['file_faults']}")
    for i, s in enumerate(report["servers"]):
        print(f"  server {i}         exit {s['exit']}, {s['stopped']}")
    print(f"  cpu              cores busy during the open loop: server "
          f"{report['cpu_cores']['server']}, mkctl {report['cpu_cores']['mkctl']}")
    rss_line = [f"{x['t']:.0f}s:{x['server_rss_kib'] // 1024}M" for x in report["timeline"]
                if "server_rss_kib" in x]
    print(f"  rss timeline     {' '.join(rss_line)}")
    stored_line = [f"{x['t']:.0f}s:{x['stored_completions']}" for x in report["timeline"]
                   if "stored_completions" in x]
    print(f"  stored timeline  {' '.join(stored_line)}")
    load_line = [f"{x['t']:.0f}s:{x['loadavg_1m']:.1f}" for x in report["timeline"]]
    print(f"  load average     {' '.join(load_line)} (the machine's, {os.cpu_count()} cores)")
    for r in report["rss"]:
        print(f"  rss process {r['process']}    warm {r.get('warm_kib')} KiB, end "
              f"{r.get('end_kib')} KiB, growth {r.get('growth_percent')}%")
    for p in report["problems"]:
        print(f"  ! {p}")
    ok = not report["problems"] and client.get("violations", 1) == 0
    print(f"soak driver: {'PASS' if ok else 'FAIL'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
