"""mkctl against a real megakerneld (127.0.0.1, port 0, a tenants file): typed flags with range
checks (no truncation), path flags that need a path, --help/--version, and the token from
--token, --token_file or MK_TOKEN, in that order. Exit codes: 0 ok, 1 the call failed, 2 bad
flags."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from megakerneld_process import Megakerneld  # noqa: E402

BINARY, MKCTL = sys.argv[1], sys.argv[2]
del sys.argv[1:3]

TOKEN = "mkctl-tenant-token"


class MkctlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="mkctl_test_")
        tenants = os.path.join(cls.dir.name, "tenants.txt")
        with open(tenants, "w") as f:
            f.write(f"tenant 5 {TOKEN}\nadmin mkctl-admin-token\n")
        cls.server = Megakerneld(BINARY, f"--tenants_file={tenants}", "--max_tenants=8")

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop(signal.SIGTERM)
        cls.dir.cleanup()
        assert rc == 0, "\n".join(cls.server.lines)

    def mkctl(self, *args, env_token=None, target=True):
        """Runs mkctl; MK_TOKEN is set only when env_token is given."""
        env = {k: v for k, v in os.environ.items() if k != "MK_TOKEN"}
        if env_token is not None:
            env["MK_TOKEN"] = env_token
        argv = [MKCTL, *args]
        if target and len(args) > 0 and not args[0].startswith("-"):
            argv.append(f"--target={self.server.target()}")
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    def assertUsageError(self, result, *needles):
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        for needle in needles:
            self.assertIn(needle, result.stderr)

    def write_file(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, "w", newline="") as f:
            f.write(text)
        return path

    # --- flags -------------------------------------------------------------------------------

    def test_version_and_help(self):
        r = self.mkctl("--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^mkctl \d+\.\d+\.\d+\n$")
        self.assertEqual(self.mkctl("publish", "--version").stdout, r.stdout)
        r = self.mkctl("--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("publish", r.stdout)
        r = self.mkctl("publish", "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        for flag in ("--opcode=N", "--priority=N", "--token_file=PATH", "MK_TOKEN"):
            self.assertIn(flag, r.stdout)
        self.assertEqual(self.mkctl().returncode, 2)

    def test_integers_out_of_range_are_rejected_not_truncated(self):
        # The old parser published opcode 2 (4294967298 mod 2^32) and priority 0 (2^32).
        self.assertUsageError(self.mkctl("publish", f"--token={TOKEN}", "--opcode=4294967298"),
                              "--opcode=4294967298", "0..4294967295")
        self.assertUsageError(self.mkctl("publish", f"--token={TOKEN}", "--priority=5"),
                              "--priority=5", "0..4")
        self.assertUsageError(self.mkctl("publish", f"--token={TOKEN}", "--priority=4294967296"),
                              "--priority=4294967296", "0..4")
        self.assertUsageError(self.mkctl("publish", f"--token={TOKEN}", "--priority=2^32"),
                              "--priority=2^32", "not an integer")
        self.assertUsageError(self.mkctl("publish", f"--token={TOKEN}", "--args=1,4294967296"),
                              "4294967296", "0..4294967295")
        self.assertUsageError(self.mkctl("publish", f"--token={TOKEN}", "--args=" + "1," * 13),
                              "--args=", "at most 12")
        self.assertUsageError(self.mkctl("resources", f"--token={TOKEN}", "--evict=4294967296"),
                              "--evict=4294967296", "0..4294967295")
        self.assertUsageError(self.mkctl("poll", f"--token={TOKEN}", "--tickets=1,-2"),
                              "--tickets=1,-2", "'-2'")

    def test_path_flag_needs_a_path(self):
        # The old parser registered a file named "true".
        self.assertUsageError(self.mkctl("resources", f"--token={TOKEN}", "--register"),
                              "--register needs a path")
        self.assertUsageError(self.mkctl("resources", "--register", f"--token={TOKEN}"),
                              "--register needs a path")
        self.assertUsageError(self.mkctl("resources", f"--token={TOKEN}", "--register="),
                              "--register needs a path")

    def test_top_interval_must_be_positive(self):
        # The old top printed -nan slots/s with --interval=0s.
        self.assertUsageError(
            self.mkctl("top", f"--token={TOKEN}", "--interval=0s", "--iterations=2"),
            "--interval=0s", "greater than 0")
        self.assertUsageError(self.mkctl("top", f"--token={TOKEN}", "--interval=-1s"),
                              "--interval=-1s")

    def test_open_bench_needs_a_rate(self):
        # The old open loop with --rate=0 never reached the end of --duration.
        self.assertUsageError(
            self.mkctl("bench", f"--token={TOKEN}", "--mode=open", "--rate=0", "--duration=1s"),
            "--rate=0", "--mode=open")
        self.assertUsageError(self.mkctl("bench", f"--token={TOKEN}", "--mode=sideways"),
                              "--mode=sideways", "closed, open, suite")

    def test_bad_values_and_unknown_flags(self):
        self.assertUsageError(self.mkctl("publish", f"--token={TOKEN}", "--wait=5"),
                              "--wait=5", "not a duration")
        self.assertUsageError(self.mkctl("publish", f"--token={TOKEN}", "--bogus=1"),
                              "unknown flag --bogus")
        self.assertUsageError(self.mkctl("resources", f"--token={TOKEN}", "--shared=maybe"),
                              "--shared=maybe", "not a boolean")
        self.assertUsageError(self.mkctl("publish", f"--token={TOKEN}", "stray"),
                              "unexpected argument 'stray'")

    def test_publish_store_then_load(self):
        # --name=value and --name value (Abseil flag syntax) both work.
        r = self.mkctl("publish", f"--token={TOKEN}", "--opcode=1", "--args=77,9", "--wait=10s")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.mkctl("publish", "--token", TOKEN, "--opcode", "3", "--args", "9", "--wait",
                       "10s", "--priority", "4")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"ticket \d+ DONE results=\[77\b")

    # --- the token ---------------------------------------------------------------------------

    def publish(self, *flags, env_token=None):
        return self.mkctl("publish", "--opcode=0", "--wait=10s", *flags, env_token=env_token)

    def assertPublished(self, result):
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"ticket \d+ DONE")

    def assertUnauthenticated(self, result):
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("UNAUTHENTICATED", result.stderr)

    def test_buffer_round_trip(self):
        """create --from a file, ls, read back (to a file and to a pipe, which gets no progress
        line), write at an offset, free; then the handle is gone (exit 1, NOT_FOUND)."""
        data = os.urandom(3 * 1024 * 1024 + 17)
        path = os.path.join(self.dir.name, "upload.bin")
        with open(path, "wb") as f:
            f.write(data)
        tok = f"--token={TOKEN}"
        r = self.mkctl("buffer", "create", tok, f"--from={path}", "--chunk_bytes=1000000")
        self.assertEqual(r.returncode, 0, r.stderr)
        handle = re.search(r"created buffer (0x[0-9a-f]{8}) \((\d+) bytes\)", r.stdout)
        self.assertIsNotNone(handle, r.stdout)
        self.assertEqual(int(handle.group(2)), len(data))
        self.assertIn(f"wrote {len(data)} bytes", r.stdout)
        self.assertEqual(r.stderr, "", "no progress line when stderr is not a terminal")
        h = handle.group(1)
        r = self.mkctl("buffer", "ls", tok)
        self.assertIn(f"{h} {len(data)} bytes", r.stdout)
        out = os.path.join(self.dir.name, "download.bin")
        r = self.mkctl("buffer", "read", tok, f"--handle={h}", f"--out={out}")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), data)
        patch = os.path.join(self.dir.name, "patch.bin")
        with open(patch, "wb") as f:
            f.write(b"megakernel")
        r = self.mkctl("buffer", "write", tok, f"--handle={h}", f"--from={patch}", "--offset=5")
        self.assertEqual(r.returncode, 0, r.stderr)
        piped = subprocess.run([MKCTL, "buffer", "read", tok, f"--handle={h}", "--offset=3",
                                "--length=14", f"--target={self.server.target()}"],
                               capture_output=True, timeout=60)
        self.assertEqual(piped.returncode, 0, piped.stderr)
        self.assertEqual(piped.stdout, data[3:5] + b"megakernel" + data[15:17])
        self.assertEqual(piped.stderr, b"")
        r = self.mkctl("buffer", "read", tok, f"--handle={h}", "--offset=0",
                       f"--length={len(data) + 1}")
        self.assertEqual(r.returncode, 1)
        self.assertIn("runs past the end", r.stderr)
        self.assertEqual(self.mkctl("buffer", "free", tok, f"--handle={h}").returncode, 0)
        r = self.mkctl("buffer", "read", tok, f"--handle={h}", "--length=1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("is not a buffer of tenant 5", r.stderr)
        self.assertUsageError(self.mkctl("buffer", "create", tok), "one of --bytes and --from")
        self.assertUsageError(self.mkctl("buffer", "frobnicate", tok), "create|write|read")

    def test_buffer_gemv_as_in_the_readme(self):
        """The README's GEMV round trip with mkctl: W (3 x 4 bf16) and x from files, y read
        back and checked against the product computed here."""
        import struct
        tok = f"--token={TOKEN}"
        w = [1.0, 2.0, -1.0, 0.5, 0.0, 1.5, 2.0, -2.0, 4.0, 0.25, 1.0, 3.0]  # exact in bf16
        x = [0.5, -1.0, 2.0, 4.0]
        bf16 = b"".join(struct.pack("<f", v)[2:] for v in w)  # the high half of each f32
        handles = []
        for name, data in (("w.bin", bf16), ("x.bin", struct.pack("<4f", *x))):
            path = os.path.join(self.dir.name, name)
            with open(path, "wb") as f:
                f.write(data)
            r = self.mkctl("buffer", "create", tok, f"--from={path}")
            self.assertEqual(r.returncode, 0, r.stderr)
            handles.append(re.search(r"created buffer (0x[0-9a-f]{8})", r.stdout).group(1))
        r = self.mkctl("buffer", "create", tok, "--bytes=12")
        handles.append(re.search(r"created buffer (0x[0-9a-f]{8})", r.stdout).group(1))
        hw, hx, hy = handles
        r = self.mkctl("publish", tok, "--opcode=65524", "--wait=10s",
                       f"--args={hw},0,0,3,4,1,{hx},0,0,{hy},0,0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("DONE results=[3 ", r.stdout)
        piped = subprocess.run([MKCTL, "buffer", "read", tok, f"--handle={hy}",
                                f"--target={self.server.target()}"], capture_output=True,
                               timeout=60)
        self.assertEqual(piped.returncode, 0, piped.stderr)
        y = struct.unpack("<3f", piped.stdout)
        want = [sum(w[r * 4 + c] * x[c] for c in range(4)) for r in range(3)]
        self.assertEqual(list(y), want)
        for h in handles:
            self.assertEqual(self.mkctl("buffer", "free", tok, f"--handle={h}").returncode, 0)

    def test_token_from_environment(self):
        self.assertUnauthenticated(self.publish())
        self.assertPublished(self.publish(env_token=TOKEN))
        self.assertUnauthenticated(self.publish(env_token="not-a-token"))

    def test_token_from_file(self):
        crlf = self.write_file("token_crlf.txt", f"{TOKEN}  \r\nsecond line\n")
        self.assertPublished(self.publish(f"--token_file={crlf}"))
        bare = self.write_file("token_bare.txt", TOKEN)
        self.assertPublished(self.publish("--token_file", bare))
        empty = self.write_file("token_empty.txt", "\n" + TOKEN + "\n")
        self.assertUsageError(self.publish(f"--token_file={empty}"), "first line is empty")
        missing = os.path.join(self.dir.name, "no_such_token")
        self.assertUsageError(self.publish(f"--token_file={missing}"), "--token_file=", "open")
        self.assertUsageError(self.publish("--token_file"), "--token_file needs a path")

    def test_token_precedence(self):
        good = self.write_file("token_good.txt", TOKEN + "\n")
        bad = self.write_file("token_bad.txt", "not-a-token\n")
        # --token beats --token_file and MK_TOKEN; --token_file beats MK_TOKEN.
        self.assertPublished(self.publish(f"--token={TOKEN}", f"--token_file={bad}",
                                          env_token="not-a-token"))
        self.assertUnauthenticated(self.publish("--token=not-a-token", f"--token_file={good}",
                                                env_token=TOKEN))
        self.assertPublished(self.publish(f"--token_file={good}", env_token="not-a-token"))
        self.assertUnauthenticated(self.publish(f"--token_file={bad}", env_token=TOKEN))


if __name__ == "__main__":
    unittest.main()
