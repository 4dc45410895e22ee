#!/usr/bin/python3
"""Uploads a matrix W and a vector x into tenant buffers, runs GEMV (y = W x) on megakerneld and
reads y back, using only the project's .proto (stubs generated here with grpc_tools).

  /usr/bin/python3 examples/python/gemv.py --target=127.0.0.1:50051 --token=TOKEN \
      --proto_root=proto [--rows=256 --cols=512]

Prints the handles, the GEMV completion and the largest difference from y computed here."""
import argparse
import os
import random
import struct
import sys
import tempfile

import grpc
from grpc_tools import protoc

GEMV = 0xFFF4
CHUNK = 1 << 20


def load_stubs(proto_root):
    out = tempfile.mkdtemp(prefix="mk_example_stubs_")
    if protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out}",
                    f"--grpc_python_out={out}",
                    os.path.join(proto_root, "mk/v1/megakernel.proto")]) != 0:
        sys.exit("protoc failed")
    for pkg in ("mk", "mk/v1"):
        open(os.path.join(out, pkg, "__init__.py"), "a").close()
    sys.path.insert(0, out)
    from mk.v1 import megakernel_pb2, megakernel_pb2_grpc
    return megakernel_pb2, megakernel_pb2_grpc


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", default="127.0.0.1:50051")
    p.add_argument("--token", default=os.environ.get("MK_TOKEN", ""))
    p.add_argument("--proto_root", default=os.path.join(os.path.dirname(__file__), "../../proto"))
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--cols", type=int, default=512)
    args = p.parse_args()
    pb, pb_grpc = load_stubs(args.proto_root)
    stub = pb_grpc.MegakernelStub(grpc.insecure_channel(args.target))
    auth = (("authorization", f"Bearer {args.token}"),) if args.token else ()

    rng = random.Random(7)
    w = [rng.uniform(-1, 1) for _ in range(args.rows * args.cols)]
    x = [rng.uniform(-1, 1) for _ in range(args.cols)]
    w_bytes = struct.pack(f"<{len(w)}f", *w)
    x_bytes = struct.pack(f"<{len(x)}f", *x)

    def upload(data):
        handle = stub.CreateBuffer(pb.CreateBufferRequest(bytes=len(data)), metadata=auth,
                                   timeout=30).buffer.handle
        chunks = (pb.WriteBufferChunk(handle=handle, offset=o, data=data[o:o + CHUNK])
                  for o in range(0, len(data), CHUNK))
        stub.WriteBuffer(chunks, metadata=auth, timeout=60)
        return handle

    hw, hx = upload(w_bytes), upload(x_bytes)
    hy = stub.CreateBuffer(pb.CreateBufferRequest(bytes=4 * args.rows), metadata=auth,
                           timeout=30).buffer.handle
    print(f"W=0x{hw:08x} x=0x{hx:08x} y=0x{hy:08x}")

    # GEMV: W, W offset lo/hi, rows, cols, dtype 0 (f32), x, x offset lo/hi, y, y offset lo/hi.
    request = pb.PublishRequest(slots=pb.SlotList(slots=[pb.Slot(
        opcode=GEMV, args=[hw, 0, 0, args.rows, args.cols, 0, hx, 0, 0, hy, 0, 0])]))
    request.wait.seconds = 30
    done = stub.Publish(request, metadata=auth, timeout=60).completions[0]
    print(f"GEMV: status={pb.CompletionStatus.Name(done.status)} result0={done.result[0]}")
    if done.status != pb.COMPLETION_STATUS_DONE:
        return 1

    y_bytes = b"".join(chunk.data for chunk in stub.ReadBuffer(
        pb.ReadBufferRequest(handle=hy, offset=0, length=4 * args.rows), metadata=auth,
        timeout=60))
    y = struct.unpack(f"<{args.rows}f", y_bytes)
    error = max(abs(y[r] - sum(w[r * args.cols + c] * x[c] for c in range(args.cols)))
                for r in range(args.rows))
    print(f"rows={args.rows} cols={args.cols} max error={error:.3g}")
    for handle in (hw, hx, hy):
        stub.FreeBuffer(pb.FreeBufferRequest(handle=handle), metadata=auth, timeout=30)
    return 0 if error < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
