"""A second-language client: Python grpcio stubs generated from the project's .proto publish,
poll, stream, read telemetry and health from a real megakerneld."""
import os
import signal
import subprocess
import sys
import tempfile
import unittest

import grpc

sys.path.insert(0, os.path.dirname(__file__))
from megakerneld_process import Megakerneld, generate_stubs  # noqa: E402

BINARY, PROTO_ROOT, TEST_PROTO_ROOT = sys.argv[1], sys.argv[2], sys.argv[3]
del sys.argv[1:4]
STUBS = generate_stubs([(PROTO_ROOT, "mk/v1/megakernel.proto"),
                        (TEST_PROTO_ROOT, "grpc_health_v1.proto"),
                        (TEST_PROTO_ROOT, "reflection_subset.proto")])
import reflection_subset_pb2 as reflection_pb  # noqa: E402
from mk.v1 import megakernel_pb2 as pb  # noqa: E402
from mk.v1 import megakernel_pb2_grpc as pb_grpc  # noqa: E402

import grpc_health_v1_pb2 as health_pb  # noqa: E402
import grpc_health_v1_pb2_grpc as health_grpc  # noqa: E402

TOKEN = "python-tenant-token"


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tenants = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
        tenants.write(f"tenant 3 {TOKEN}\nadmin python-admin-token\n")
        tenants.close()
        cls.server = Megakerneld(BINARY, f"--tenants_file={tenants.name}", "--max_tenants=8")
        cls.channel = grpc.insecure_channel(cls.server.target())
        cls.stub = pb_grpc.MegakernelStub(cls.channel)
        cls.auth = (("authorization", f"Bearer {TOKEN}"),)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        rc = cls.server.stop(signal.SIGTERM)
        assert rc == 0, "\n".join(cls.server.lines)

    def test_publish_with_wait_returns_results(self):
        req = pb.PublishRequest(slots=pb.SlotList(slots=[
            pb.Slot(opcode=1, args=[77, 4]), pb.Slot(opcode=3, args=[4])]))
        req.wait.seconds = 10
        resp = self.stub.Publish(req, metadata=self.auth, timeout=30)
        self.assertEqual(resp.count, 2)
        self.assertEqual([c.status for c in resp.completions], [pb.COMPLETION_STATUS_DONE] * 2)
        self.assertEqual(resp.completions[1].result[0], 77)

    def test_publish_then_poll(self):
        resp = self.stub.Publish(pb.PublishRequest(slots=pb.SlotList(slots=[pb.Slot()] * 5)),
                                 metadata=self.auth, timeout=30)
        poll = pb.PollRequest(tickets=range(resp.first_ticket, resp.first_ticket + 5))
        poll.wait.seconds = 10
        got = self.stub.Poll(poll, metadata=self.auth, timeout=30)
        self.assertEqual(sorted(c.ticket for c in got.completions),
                         list(range(resp.first_ticket, resp.first_ticket + 5)))

    def test_stream(self):
        requests = [pb.PublishRequest(request_id=i, slots=pb.SlotList(slots=[pb.Slot()] * 3))
                    for i in range(4)]
        completions, acks = 0, []
        for batch in self.stub.Stream(iter(requests), metadata=self.auth, timeout=30):
            completions += len(batch.completions)
            acks.extend(a.request_id for a in batch.acks)
        self.assertEqual(completions, 12)
        self.assertEqual(sorted(acks), [0, 1, 2, 3])

    def test_telemetry(self):
        t = self.stub.GetTelemetry(pb.TelemetryRequest(), metadata=self.auth, timeout=30)
        self.assertEqual(t.engine.backend, "cpu")
        self.assertGreater(t.occupancy.total, 0)
        self.assertEqual(len(t.priority_fairness), 5)

    def test_errors_are_precise(self):
        bad = pb.PublishRequest(slots=pb.SlotList(slots=[pb.Slot(), pb.Slot(opcode=31337)]))
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.Publish(bad, metadata=self.auth, timeout=30)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("slot 1: opcode 31337", e.exception.details())
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.Publish(pb.PublishRequest(slots=pb.SlotList(slots=[pb.Slot()])), timeout=30)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_buffers_and_the_gemv_example(self):
        """examples/python/gemv.py (only the .proto) uploads W and x, runs GEMV and reads y."""
        example = os.path.join(os.path.dirname(__file__), "../../examples/python/gemv.py")
        r = subprocess.run([sys.executable, example, f"--target={self.server.target()}",
                            f"--token={TOKEN}", f"--proto_root={PROTO_ROOT}", "--rows=37",
                            "--cols=301"], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("GEMV: status=COMPLETION_STATUS_DONE result0=37", r.stdout)
        self.assertRegex(r.stdout, r"max error=")
        # The example freed its buffers; another tenant's handle is NOT_FOUND.
        self.assertEqual(len(self.stub.ListBuffers(pb.ListBuffersRequest(), metadata=self.auth,
                                                   timeout=30).buffers), 0)
        with self.assertRaises(grpc.RpcError) as err:
            self.stub.FreeBuffer(pb.FreeBufferRequest(handle=0x80100000), metadata=self.auth,
                                 timeout=30)
        self.assertEqual(err.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_health(self):
        stub = health_grpc.HealthStub(self.channel)
        resp = stub.Check(health_pb.HealthCheckRequest(service="mk.v1.Megakernel"), timeout=30)
        self.assertEqual(resp.status, health_pb.HealthCheckResponse.SERVING)

    def test_reflection_lists_services(self):
        call = self.channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb.ServerReflectionResponse.FromString)
        responses = list(call(iter([reflection_pb.ServerReflectionRequest(list_services="")]),
                              timeout=30))
        names = {s.name for s in responses[0].list_services_response.service}
        self.assertTrue({"mk.v1.Megakernel", "mk.v1.Admin", "mk.v1.Diagnostics",
                         "grpc.health.v1.Health"} <= names, names)


if __name__ == "__main__":
    unittest.main()
