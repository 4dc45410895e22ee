"""A real Prometheus server scrapes a real megakerneld every second while the test drives load;
the test then reads Prometheus's HTTP API and checks that ring gauges, completion counters and
the latency histogram arrived with the values the test caused. Also: promtool on a live scrape,
and a metrics port already in use is a clear startup error."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import grpc

sys.path.insert(0, os.path.dirname(__file__))
from megakerneld_process import Megakerneld, generate_stubs  # noqa: E402

BINARY, PROTO_ROOT = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
generate_stubs([(PROTO_ROOT, "mk/v1/megakernel.proto")])
from mk.v1 import megakernel_pb2 as pb  # noqa: E402
from mk.v1 import megakernel_pb2_grpc as pb_grpc  # noqa: E402

TOKEN = "prometheus-test-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def metrics_port(server):
    for line in server.lines:
        if "metrics on http://" in line:
            return int(line.rsplit(":", 1)[1].split("/")[0])
    raise RuntimeError("no metrics line:\n" + "\n".join(server.lines))


class PrometheusScrapeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mk_prom_")
        tenants = os.path.join(cls.tmp, "tenants.txt")
        with open(tenants, "w") as f:
            f.write(f"tenant 3 {TOKEN}\n")
        cls.server = Megakerneld(BINARY, f"--tenants_file={tenants}", "--max_tenants=8",
                                 "--ring_slots=4096", "--metrics_listen=127.0.0.1:0")
        # The metrics line follows the listening line.
        for line in cls.server.proc.stdout:
            cls.server.lines.append(line.rstrip())
            if "metrics on" in line:
                break
        cls.metrics_port = metrics_port(cls.server)
        cls.prom_port = free_port()
        config = os.path.join(cls.tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: megakerneld\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{cls.metrics_port}']\n")
        cls.prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(cls.tmp, 'data')}",
             f"--web.listen-address=127.0.0.1:{cls.prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.api = f"http://127.0.0.1:{cls.prom_port}"
        deadline = time.time() + 60
        while True:  # readiness: Prometheus answers /-/ready once its TSDB is open
            try:
                if "Ready" in http_get(cls.api + "/-/ready"):
                    break
            except OSError:
                pass
            if time.time() > deadline or cls.prometheus.poll() is not None:
                raise RuntimeError("prometheus did not become ready")
            time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        cls.prometheus.terminate()
        cls.prometheus.wait(timeout=60)
        assert cls.server.stop(signal.SIGTERM) == 0

    def query(self, expr):
        url = self.api + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        result = json.loads(http_get(url))["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr, predicate, timeout=60):
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            value = self.query(expr)
            if value is not None and predicate(value):
                return value
            time.sleep(0.5)  # Prometheus scrapes every second; poll its API until it has it
        self.fail(f"{expr} never satisfied the check (last value {value})")

    def test_scraped_values_match_the_load(self):
        with grpc.insecure_channel(self.server.target()) as channel:
            stub = pb_grpc.MegakernelStub(channel)
            for _ in range(5):
                req = pb.PublishRequest(slots=pb.SlotList(slots=[pb.Slot(opcode=0)] * 100))
                req.wait.seconds = 10
                self.assertEqual(len(stub.Publish(req, metadata=AUTH, timeout=30).completions), 100)
            bad = pb.PublishRequest(slots=pb.SlotList(slots=[pb.Slot(opcode=3, args=[999])] * 7))
            bad.wait.seconds = 10
            self.assertEqual(len(stub.Publish(bad, metadata=AUTH, timeout=30).completions), 7)
        self.wait_for('mk_slots_completed_total{tenant="3",opcode_class="scratch"}', lambda v: v == 500)
        self.wait_for('mk_slots_faulted_total{tenant="3",opcode_class="scratch"}', lambda v: v == 7)
        self.wait_for('mk_slots_published_total{tenant="3",opcode_class="scratch"}', lambda v: v == 507)
        self.wait_for("mk_ring_capacity_slots", lambda v: v == 4096)
        self.wait_for('mk_ring_slots{state="EMPTY"}', lambda v: v == 4096)
        self.wait_for("mk_slot_latency_seconds_count", lambda v: v >= 507)
        self.wait_for('mk_slot_latency_seconds_bucket{le="+Inf"}', lambda v: v >= 507)
        self.wait_for('mk_grpc_requests_total{method="/mk.v1.Megakernel/Publish",code="0"}',
                      lambda v: v == 6)
        self.wait_for("mk_watchdog_stalled", lambda v: v == 0)
        self.wait_for('up{job="megakerneld"}', lambda v: v == 1)

    def test_live_scrape_passes_promtool(self):
        scrape = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        self.assertIn("mk_ring_slots", scrape)
        lint = subprocess.run(["promtool", "check", "metrics"], input=scrape, text=True,
                              capture_output=True)
        self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)
        self.assertEqual(lint.stdout.strip() + lint.stderr.strip(), "")

    def test_metrics_port_in_use_is_a_clear_startup_error(self):
        proc = subprocess.run([BINARY, "--listen=127.0.0.1:0",
                               f"--metrics_listen=127.0.0.1:{self.metrics_port}"],
                              capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(f"cannot listen on 127.0.0.1:{self.metrics_port}", proc.stderr)


if __name__ == "__main__":
    unittest.main()
