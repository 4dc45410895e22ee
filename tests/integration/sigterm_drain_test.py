"""SIGTERM drains: megakerneld stops accepting, finishes every accepted slot, exits 0."""
import os
import signal
import struct
import sys
import unittest

import grpc

sys.path.insert(0, os.path.dirname(__file__))
from megakerneld_process import Megakerneld, generate_stubs  # noqa: E402

BINARY, PROTO_ROOT = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
generate_stubs([(PROTO_ROOT, "mk/v1/megakernel.proto")])
from mk.v1 import megakernel_pb2 as pb  # noqa: E402
from mk.v1 import megakernel_pb2_grpc as pb_grpc  # noqa: E402


def memcpy_slot():
    # STATUS, OPCODE=MEMCPY, TENANT, PRIORITY=NORMAL, src=0, dst=32768, count=32768, 9 zeros.
    return struct.pack("<16I", 0, 5, 0, 2, 0, 1 << 15, 1 << 15, *([0] * 9))


class SigtermDrainTest(unittest.TestCase):
    def test_sigterm_finishes_accepted_work(self):
        server = Megakerneld(BINARY, "--scratch_words=65536", "--max_tenants=4",
                             "--ring_slots=65536")
        with grpc.insecure_channel(server.target()) as channel:
            stub = pb_grpc.MegakernelStub(channel)
            accepted = 0
            for _ in range(5):  # a backlog of real work, hundreds of milliseconds long
                resp = stub.Publish(pb.PublishRequest(packed_slots=memcpy_slot() * 4000),
                                    timeout=30)
                accepted += resp.count
        rc = server.stop(signal.SIGTERM)
        output = "\n".join(server.lines)
        self.assertEqual(rc, 0, output)
        self.assertIn("SIGTERM: draining", output)
        stopped = [l for l in server.lines if "stopped:" in l]
        self.assertEqual(len(stopped), 1, output)
        fields = dict(kv.split("=") for kv in stopped[0].split("stopped: ")[1].split())
        # The startup health round trip is one more accepted slot.
        self.assertEqual(int(fields["accepted"]), accepted + 1, output)
        self.assertEqual(int(fields["done"]), accepted + 1, output)
        self.assertEqual(int(fields["faulted"]), 0, output)
        self.assertEqual(int(fields["cancelled"]), 0, output)

    def test_second_sigterm_ends_a_drain_at_once(self):
        server = Megakerneld(BINARY, "--scratch_words=65536", "--max_tenants=4",
                             "--ring_slots=65536")
        with grpc.insecure_channel(server.target()) as channel:
            stub = pb_grpc.MegakernelStub(channel)
            for _ in range(7):  # 28000 MEMCPYs: the drain is still running at the 2nd signal
                stub.Publish(pb.PublishRequest(packed_slots=memcpy_slot() * 4000), timeout=30)
        server.proc.send_signal(signal.SIGTERM)
        for line in server.proc.stdout:  # the drain has begun once this line is out
            server.lines.append(line.rstrip())
            if "SIGTERM: draining" in line:
                break
        rc = server.stop(signal.SIGTERM, timeout=30)
        output = "\n".join(server.lines)
        self.assertEqual(rc, 3, output)
        self.assertIn("second signal during the drain", output)
        self.assertFalse([l for l in server.lines if "stopped:" in l], output)

    def test_help_and_version(self):
        import subprocess
        version = subprocess.run([BINARY, "--version"], capture_output=True, text=True,
                                 timeout=30)
        self.assertEqual(version.returncode, 0)
        self.assertRegex(version.stdout, r"^megakerneld \d+\.\d+\.\d+")
        helped = subprocess.run([BINARY, "--help"], capture_output=True, text=True, timeout=30)
        text = helped.stdout + helped.stderr
        self.assertNotIn("No flags matched", text)
        self.assertIn("--listen", text)
        self.assertIn("--tenants_file", text)


if __name__ == "__main__":
    unittest.main()
