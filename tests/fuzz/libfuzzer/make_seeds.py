#!/usr/bin/env python3
"""Writes the seed inputs of the libFuzzer targets (tests/fuzz/libfuzzer/corpus/<name>/seed-*).

Each target reads its input front to back (fuzz_support.h: Input); the seeds below follow each
target's layout, described at the top of its <name>_fuzzer.cc, so that fuzzing starts from
valid and near-valid inputs. Regression inputs (regress-*) are kept as found, not written here.
Run it from anywhere; it rewrites only the seed-* files.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def u32(*values):
    return b"".join(struct.pack("<I", v & 0xFFFFFFFF) for v in values)


def u64(v):
    return struct.pack("<Q", v)


def header(op, argc):  # a PACKED_SLOT record header word
    return (op & 0xFFFF) | (argc << 16)


def write(name, seeds):
    folder = os.path.join(ROOT, name)
    os.makedirs(folder, exist_ok=True)
    for old in os.listdir(folder):
        if old.startswith("seed-"):
            os.remove(os.path.join(folder, old))
    for label, data in seeds.items():
        with open(os.path.join(folder, "seed-" + label), "wb") as f:
            f.write(data)


def debug_log():
    # Snapshot: length in words, the words. Appends: capacity, trailing words, start cursor,
    # count, then 4 words per record.
    records = u32(7, 1, 2, 0) + u32(8, 3, 4, 1)
    full = bytes([9]) + u32(8) + records
    overflow = bytes([9]) + u32(40) + records
    appends = bytes([2, 0]) + u32(0) + bytes([3]) + records + u32(9, 9, 9, 2)
    wrap = bytes([3, 1]) + u32(0xFFFFFFF8) + bytes([4]) + records + records
    return {
        "decode-two-records": full + appends,
        "decode-overflow": overflow + bytes([64, 3]) + u32(0) + bytes([70]),
        "append-cursor-wrap": bytes([0]) + wrap,
        "empty-log": bytes([0, 0, 0]) + u32(0) + bytes([1]) + u32(1, 2, 3, 4),
    }


def control_buffer():
    # Layout: a selector byte (< 224: small) then the value byte, for tenants then scratch
    # words; `shorter` and `delta`; then operations (op, tenant selector, tenant, arguments).
    def layout(tenants, scratch, shorter=0, delta=0):
        return bytes([0, tenants, 0, scratch, shorter, delta])

    def op(code, tenant, *args):
        return bytes([code, 0, tenant]) + b"".join(args)

    ops = (op(0, 1, b"\x00") + op(1, 1) + op(2, 3, u32(77)) + op(3, 2, u32(5)) + op(4, 31) +
           op(5, 4) + op(6, 40) + op(8, 200, b"\x00", u32(1)) + op(9, 0))
    corrupt = op(7, 0, b"\x01", u32(0xFFFFFFF0)) + op(1, 3) + op(0, 3, b"\x01")
    return {
        "four-tenants": layout(4, 16) + ops,
        "compat-mask-29": layout(29, 2) + ops,
        "extended-mask-30": layout(30, 2, 0, 3) + ops + corrupt,
        "too-short": layout(8, 8, 1, 0),
        "zero-tenants": layout(0, 8),
        "huge-layout": bytes([255]) + u32(0x10000) + bytes([255]) + u32(0x10000) + bytes([0, 9]),
    }


def io_queue():
    # Shape (< 224: 64 + n slots), the value, `in use` flag; then operations.
    def publish(hint_any, hint, op=1):
        return (bytes([0, 1, op]) + u32(3, 7) + u64(4096) + u32(512, 42) +
                (bytes([0]) + u32(hint) if hint_any else bytes([1, hint])))

    claim = bytes([2, 0, 0])
    complete = bytes([3, 1, 1, 0, 10, 0, 0])  # one completion: a claimed slot, ok
    fail = bytes([4, 1, 0, 200, 5, 0])     # one completion, an error with errno 5
    recycle = bytes([5, 0, 0])
    cycle = publish(False, 0) + bytes([1]) + claim + complete + recycle + bytes([6, 0, 0])
    busy = publish(False, 10) + publish(False, 10) + bytes([2, 0, 10, 2, 0, 11]) + fail
    return {
        "publish-claim-complete-recycle": bytes([0, 0, 0]) + cycle,
        "two-publishes-one-error": bytes([0, 6, 0]) + busy + bytes([7, 0, 11, 9, 1, 2]),
        "in-use-queue": bytes([0, 63, 1]) + u32(12345) + bytes(range(8)) * 16 + publish(True, 5),
        "hint-near-wrap": bytes([0, 40, 0]) + publish(True, 0xFFFFFFFF) * 3,
        "ragged-buffer": bytes([250, 100, 3]),
        "reserved-slot": bytes([0, 0, 0]) + bytes([8, 0, 1, 3]) + publish(False, 0) + claim,
    }


def telemetry():
    # Ring: slot count, then per slot status, opcode, ticket, class; a `ragged` byte; control:
    # length selector (>= 32: 160 + n words), seed, density; window opcodes; DONE_COUNT.
    def slot(status, opcode, ticket, cls):
        return bytes([status, opcode, ticket, cls])

    garbage = bytes([250]) + u32(0xDEAD) + bytes([9, 0, 0])  # STATUS >= 240: any word
    ring = (bytes([6]) + slot(1, 2, 1, 0) + slot(2, 2, 1, 1) + slot(3, 4, 2, 0) +
            slot(0, 2, 1, 0) + slot(7, 2, 1, 2) + garbage + bytes([40]))
    control = bytes([64, 0]) + u32(99) + bytes([2])
    windows = bytes([3, 2, 4, 9])
    return {
        "six-slots": ring + control + windows + u32(5),
        "short-control": ring + bytes([0, 100]) + u32(1) + bytes([4]) + windows + u32(0),
        "ragged-ring": bytes([2]) + slot(1, 1, 1, 1) + slot(1, 1, 1, 1) + bytes([0, 5]) + control,
        "too-many-windows": ring + control + bytes([250, 9]) + bytes(range(70)),
        "empty": bytes([0, 40, 64, 0]) + u32(0) + bytes([0, 0]) + u32(0),
    }


def packed_slot():
    # Decode: 12 argument words, each a kind byte (< 128: a header word of opcode kind % 8 and
    # argc (kind >> 3) % 5; < 192: kind % 16; else a 32-bit value), an override byte (odd: ARG0
    # = 1 + n), scratch bytes; encode: op count, per op kind, exact flag, args; two images.
    def hdr(op, argc):
        return bytes([op + (argc << 3)])

    def small(v):
        return bytes([128 + v])

    # STORE_U32 5 -> [3]; LOAD_U32 [3]; ATOMIC_ADD 2 -> [3]: three records, ARG0 = 3.
    words = (small(3) + hdr(1, 2) + small(5) + small(3) + hdr(3, 1) + small(3) + hdr(2, 2) +
             small(2) + small(3) + hdr(0, 0) + hdr(0, 0) + hdr(0, 0))
    scratch = bytes(range(16))
    encode = bytes([2, 1, 0, 4, 5, 4, 3, 0, 2, 6])
    slot_image = u32(0, 0x80000001, 0, 2, 3, header(1, 2), 5, 3) + u32(*([0] * 8))
    completion = u32(7, 0, 42, 0, 2, 0) + u32(*([0] * 10))
    images = slot_image + completion + b"\x00" + u32(0) + u32(128)
    return {
        "three-ops": words + b"\x00" + scratch + encode + images,
        "bad-count": small(12) + words[1:] + b"\x00" + encode + images,
        "eleven-nops": small(11) + hdr(0, 0) * 11 + b"\x00" + scratch + bytes([11]) +
        bytes([0, 0]) * 11 + images,
        "memcpy-out-of-bounds": small(1) + hdr(5, 3) + small(0) + small(15) + small(9) +
        hdr(0, 0) * 7 + b"\x00" + scratch + encode + images,
    }


def slot_validation():
    # Slot count, then per slot: opcode pick (< 232: a table entry, see kOpcodes), priority
    # byte, 12 argument bytes (< 200: small), then a fence byte (BATCH_FENCE) or two ARG0 bytes
    # and 11 record bytes (PACKED_SLOT: < 160 a header of opcode kind % 8 and argc
    # (kind >> 3) % 5, else kind % 20); then per accepted slot a tenant byte and 32 scratch
    # bytes.
    def slot(pick, priority, args=bytes(12), extra=b""):
        return bytes([pick, priority]) + args + extra

    store = slot(1, 2, bytes([7, 3]) + bytes(10))
    fence = slot(7, 0, bytes([2, 9]) + bytes(10), b"\x00")
    # ARG0 = 1 + 1 ops; records: STORE_U32 (kind 1 + 8 * 2) 5 -> [3], LOAD_U32 (3 + 8) [3].
    packed = slot(15, 4, bytes(12), bytes([0, 1, 17, 165, 163, 11, 163, 0, 0, 0, 0, 0, 0]))
    sum_op = slot(8, 1, bytes([0, 8]) + bytes(10))
    run = (b"\x01" + bytes(range(32))) * 8
    return {
        "mixed-batch": bytes([5]) + store + sum_op + fence + packed + slot(14, 2) + run,
        "shutdown-refused": bytes([2]) + store + slot(16, 2),
        "bad-priority": bytes([1]) + slot(0, 5),
        "fence-too-far": bytes([1]) + slot(7, 0, bytes([1]) + bytes(11), b"\x00"),
        "unknown-opcode": bytes([2]) + store + slot(9, 0),
        "load-miss-and-checksum": bytes([2]) + slot(13, 0) + slot(10, 3) + run,
        "empty": bytes([0]),
    }


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, wire_type, payload):
    key = varint(number << 3 | wire_type)
    if wire_type == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def publish_request():
    def typed_slot(opcode, priority=None, args=()):
        s = field(1, 0, opcode)
        if priority is not None:
            s += field(2, 0, priority)
        if args:
            s += field(3, 2, b"".join(varint(a) for a in args))
        return s

    def slots(*items):
        return field(1, 2, b"".join(field(1, 2, s) for s in items))

    image = u32(0, 1, 0, 2, 7, 3) + u32(*([0] * 10))
    packed_image = u32(0, 0x80000001, 0, 4, 1, header(0, 0)) + u32(*([0] * 10))
    return {
        "typed": slots(typed_slot(1, 2, (7, 3)), typed_slot(3, None, (3,)), typed_slot(0)) +
        field(4, 0, 42),
        "typed-13-args": slots(typed_slot(1, 0, tuple(range(13)))),
        "typed-fault-status": slots(typed_slot(2, 1, (1, 5, 6) + (0,) * 9)),
        "packed": field(2, 2, image + packed_image) + field(3, 2, field(1, 0, 1)),
        "packed-ragged": field(2, 2, image[:63]),
        "empty": b"",
    }


def tenants_file():
    text = (b"# who may call\n\ntenant 3 tenant-three-token   # trailing comment\n"
            b"admin the-admin-token\r\ntenant\t0\tzero-zero-zero\n")
    return {
        "valid": bytes([0, 16]) + text,
        "bad-id": bytes([0, 2]) + b"tenant 2 tenant-two-token\n",
        "short-token": bytes([0, 8]) + b"tenant 1 short\n",
        "token-twice": bytes([0, 8]) + b"tenant 1 same-token-twice\nadmin same-token-twice\n",
        "malformed": bytes([0, 8]) + b"root one-token-here\n",
        "huge-max": bytes([255]) + u32(0xFFFFFFFF) + b"tenant 4294967294 big-tenant-id\n",
        "cert": bytes([0, 8]) + text[text.index(b"tenant 3"):] +
        b"cert 3 client-three\ncert admin ops.example\ncert 7 no-token\ncert 3 also-three\n",
        "cert-bad-id": bytes([0, 4]) + b"cert 4 client-four\n",
    }


def mkctl_flags():
    def argv(*args):
        return b"\0".join(a.encode() for a in args)

    return {
        "publish": argv("--opcode=2", "--args=5,0", "--priority", "1", "--count=3", "--wait=1s"),
        "poll": argv("--tickets=1,2,0x3", "--wait", "250ms", "--target=host:1"),
        "bench": argv("--mode=open", "--duration=1m30s", "--noshared", "--evict=7"),
        "resources": argv("--register=a/b.bin", "--shared", "--offset=4096", "--token=t"),
        "out-of-range": argv("--priority=5", "--opcode=4294967296"),
        "help": argv("--help", "--version", "--"),
    }


def server_flags():
    return {
        "uint32": b"\x00" + b"65536",
        "uint32-hex": b"\x00" + b"0x10000",
        "int": b"\x01" + b"-200",
        "duration": b"\x02" + b"1m30.5s",
        "bool": b"\x03" + b"true",
        "engine": b"\x04" + b"cuda-emulated",
    }


def main():
    write("debug_log", debug_log())
    write("control_buffer", control_buffer())
    write("io_queue", io_queue())
    write("telemetry", telemetry())
    write("packed_slot", packed_slot())
    write("slot_validation", slot_validation())
    write("publish_request", publish_request())
    write("tenants_file", tenants_file())
    write("mkctl_flags", mkctl_flags())
    write("server_flags", server_flags())


if __name__ == "__main__":
    main()
