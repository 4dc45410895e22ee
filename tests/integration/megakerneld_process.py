"""Starts the real megakerneld binary on 127.0.0.1 port 0 and generates Python stubs from the
project's .proto files (python3-grpcio and python3-grpc-tools from Debian)."""
import os
import subprocess
import sys
import tempfile

from grpc_tools import protoc


def generate_stubs(proto_roots):
    """Generates stubs for (root, file) pairs into a temp dir and puts it on sys.path."""
    out = tempfile.mkdtemp(prefix="mk_pystubs_")
    for root, rel in proto_roots:
        rc = protoc.main(["protoc", f"-I{root}", f"--python_out={out}",
                          f"--grpc_python_out={out}", os.path.join(root, rel)])
        if rc != 0:
            raise RuntimeError(f"protoc failed for {rel}")
    for pkg in ("mk", "mk/v1"):
        os.makedirs(os.path.join(out, pkg), exist_ok=True)
        open(os.path.join(out, pkg, "__init__.py"), "a").close()
    sys.path.insert(0, out)
    return out


class Megakerneld:
    def __init__(self, binary, *flags):
        # Tests never use fixed ports: metrics go to a free port unless the test chose one.
        if not any(f.startswith("--metrics_listen") for f in flags):
            flags = (*flags, "--metrics_listen=127.0.0.1:0")
        self.proc = subprocess.Popen([binary, "--listen=127.0.0.1:0", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.port = None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "listening on 127.0.0.1:" in line:
                self.port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
                break
        if self.port is None:
            raise RuntimeError("megakerneld did not start:\n" + "\n".join(self.lines))

    def target(self):
        return f"127.0.0.1:{self.port}"

    def stop(self, sig, timeout=60):
        self.proc.send_signal(sig)
        rest, _ = self.proc.communicate(timeout=timeout)
        self.lines.extend(rest.splitlines())
        return self.proc.returncode
