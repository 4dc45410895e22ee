// libFuzzer target: PACKED_SLOT argument words (mk/engine/packed_slot.h, docs/protocol.md
// "Opcodes") and the 64-byte packed images of mk.v1 (mk/proto/packed_codec.h).
//
// Input: 12 argument words; a list of inner ops to encode (opcodes and argument counts drawn to
// straddle the valid ones); a 64-byte slot image; a 64-byte completion image; a byte count.
// Properties:
// - the host decoder never accepts what the interpreter would refuse: for decoded words,
//   ExecutePacked never faults BAD_ARGUMENT or UNKNOWN_OPCODE, runs exactly the decoded ops
//   (the same results and scratch as running them one by one) and faults only OUT_OF_BOUNDS,
//   naming a decoded op;
// - decode(encode(ops)) == ops, encode(decode(words)) == words over the words the records use
//   (the rest zero), and EncodePackedSlot accepts exactly the op lists the protocol allows
//   (1..11 ops, each a scratch built-in 0..5 with its argument count, at most 11 words);
// - a slot image decodes and re-encodes to itself but STATUS and TENANT (zero); a completion
//   image decodes exactly when its STATUS is DONE, FAULT or CANCELLED and re-encodes to itself
//   but the OPCODE word; CheckPackedSize accepts exactly whole images.
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/match.h"
#include "fuzz/libfuzzer/fuzz_support.h"
#include "mk/engine/interpreter.h"
#include "mk/engine/packed_slot.h"
#include "mk/engine/protocol.h"
#include "mk/proto/packed_codec.h"

namespace mk::engine {
namespace {

namespace pk = protocol::packed;
using protocol::ExecResult;
using protocol::FaultCode;
using protocol::SlotStatus;

constexpr uint32_t kArity[] = {0, 2, 2, 1, 3, 3};  // docs/protocol.md, "Opcodes"
constexpr uint32_t kScratchWords = 16;

// Decoded words against the interpreter, on two copies of one scratch window.
void CheckAgainstInterpreter(const PackedArgs& args, const std::vector<InnerOp>& ops,
                             fuzz::Input& in) {
  uint32_t packed_words[kScratchWords];
  for (uint32_t& w : packed_words) w = in.Below(20);
  uint32_t serial_words[kScratchWords];
  std::memcpy(serial_words, packed_words, sizeof(packed_words));
  const protocol::Scratch packed{packed_words, kScratchWords};
  const protocol::Scratch serial{serial_words, kScratchWords};

  const ExecResult r = protocol::ExecutePacked(args.data(), packed);
  std::optional<uint32_t> faulted;
  FaultCode code = FaultCode::kNone;
  std::vector<uint32_t> results;
  for (uint32_t i = 0; i < ops.size() && !faulted; ++i) {
    uint32_t inner[pk::kMaxInnerArgs] = {};
    std::copy(ops[i].args.begin(), ops[i].args.end(), inner);
    const ExecResult one = protocol::ExecuteScratchOp(ops[i].opcode, inner, serial);
    if (one.status == SlotStatus::kFault) {
      faulted = i;
      code = static_cast<FaultCode>(one.results[0]);
    } else {
      results.push_back(one.result_count > 0 ? one.results[0] : 0);
    }
  }
  if (faulted) {
    MK_FUZZ_CHECK(code == FaultCode::kOutOfBounds, "inner op ", *faulted, " faulted ",
                  static_cast<uint32_t>(code));
    MK_FUZZ_CHECK(r.status == SlotStatus::kFault &&
                      r.results[0] == static_cast<uint32_t>(FaultCode::kOutOfBounds) &&
                      r.results[1] == *faulted,
                  "ExecutePacked: status ", static_cast<uint32_t>(r.status), " fault ",
                  r.results[0], " detail ", r.results[1], "; expected OUT_OF_BOUNDS at ", *faulted);
  } else {
    MK_FUZZ_CHECK(r.status == SlotStatus::kDone && r.result_count == ops.size(),
                  "ExecutePacked: status ", static_cast<uint32_t>(r.status), " fault ",
                  r.results[0], " detail ", r.results[1], " for ", ops.size(), " decoded ops");
    for (size_t i = 0; i < results.size(); ++i) {
      MK_FUZZ_CHECK(r.results[i] == results[i], "result ", i);
    }
  }
  MK_FUZZ_CHECK(std::memcmp(packed_words, serial_words, sizeof(packed_words)) == 0,
                "the scratch differs from running the decoded ops one by one");
}

void CheckDecode(fuzz::Input& in) {
  PackedArgs args{};
  for (uint32_t& w : args) {
    // Header-like words often: a small opcode and argument count.
    const uint8_t kind = in.U8();
    w = kind < 128 ? pk::HeaderWord(kind % 8, (kind >> 3) % 5) : kind < 192 ? kind % 16 : in.U32();
  }
  if (in.Bool()) args[0] = 1 + in.Below(pk::kMaxInnerOps);
  const absl::StatusOr<std::vector<InnerOp>> ops = DecodePackedSlot(args);
  if (!ops.ok()) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(ops.status()), ops.status().ToString());
    MK_FUZZ_CHECK(absl::StartsWith(ops.status().message(), "packed slot: "),
                  ops.status().ToString());
    return;
  }
  MK_FUZZ_CHECK(!ops->empty() && ops->size() == args[0] && ops->size() <= pk::kMaxInnerOps,
                ops->size(), " ops for ARG0 ", args[0]);
  uint32_t used = 1;
  for (const InnerOp& op : *ops) {
    MK_FUZZ_CHECK(pk::IsInnerOpcode(op.opcode) && op.args.size() == kArity[op.opcode],
                  "decoded op ", op.opcode, " with ", op.args.size(), " args");
    used += 1 + static_cast<uint32_t>(op.args.size());
  }
  MK_FUZZ_CHECK(used <= protocol::kArgWords, used, " words used");
  const absl::StatusOr<PackedArgs> again = EncodePackedSlot(*ops);
  MK_FUZZ_CHECK(again.ok(), again.status().ToString());
  for (uint32_t w = 0; w < protocol::kArgWords; ++w) {
    MK_FUZZ_CHECK((*again)[w] == (w < used ? args[w] : 0), "re-encoded word ", w);
  }
  CheckAgainstInterpreter(args, *ops, in);
}

void CheckEncode(fuzz::Input& in) {
  std::vector<InnerOp> ops(in.Below(14));
  uint32_t words = 1;
  bool valid = !ops.empty() && ops.size() <= pk::kMaxInnerOps;
  for (InnerOp& op : ops) {
    const uint8_t kind = in.U8();
    op.opcode = kind < 240 ? kind % 8 : in.U32();
    const bool exact = in.U8() < 200 && pk::IsInnerOpcode(op.opcode);
    op.args.resize(exact ? kArity[op.opcode] : in.Below(6));
    for (uint32_t& a : op.args) a = in.Below(24);
    valid = valid && pk::IsInnerOpcode(op.opcode) && op.args.size() == kArity[op.opcode];
    words += 1 + static_cast<uint32_t>(op.args.size());
  }
  valid = valid && words <= protocol::kArgWords;
  const absl::StatusOr<PackedArgs> args = EncodePackedSlot(ops);
  MK_FUZZ_CHECK(args.ok() == valid, args.status().ToString(), " for ", ops.size(), " ops");
  if (!args.ok()) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(args.status()), args.status().ToString());
    return;
  }
  const absl::StatusOr<std::vector<InnerOp>> back = DecodePackedSlot(*args);
  MK_FUZZ_CHECK(back.ok() && *back == ops, back.status().ToString());
}

void CheckImages(fuzz::Input& in) {
  char image[proto::kPackedBytes] = {};
  const absl::string_view slot_bytes = in.Bytes(sizeof(image));
  std::memcpy(image, slot_bytes.data(), slot_bytes.size());
  const proto::PackedSlot slot = proto::DecodePackedSlot(image);
  char again[proto::kPackedBytes];
  proto::EncodePackedSlot(slot, again);
  proto::PackedWords expected = proto::LoadPackedWords(image);
  expected[protocol::kWordStatus] = 0;
  expected[protocol::kWordTenant] = 0;
  MK_FUZZ_CHECK(proto::LoadPackedWords(again) == expected, "slot image round trip");

  std::memset(image, 0, sizeof(image));
  const absl::string_view completion_bytes = in.Bytes(sizeof(image));
  std::memcpy(image, completion_bytes.data(), completion_bytes.size());
  if (in.Bool()) {  // a valid STATUS often
    constexpr uint32_t kValid[] = {3, 7, 0xFFFFFFFFu};
    std::memcpy(image, &kValid[in.Below(3)], sizeof(uint32_t));
  }
  const proto::PackedWords words = proto::LoadPackedWords(image);
  const uint32_t status = words[protocol::kWordStatus];
  const size_t index = in.U32();
  const absl::StatusOr<proto::PackedCompletion> c = proto::DecodePackedCompletion(image, index);
  MK_FUZZ_CHECK(c.ok() == (status == 3 || status == 7 || status == 0xFFFFFFFFu),
                c.status().ToString());
  if (c.ok()) {
    MK_FUZZ_CHECK(c->ticket == (uint64_t{words[2]} | uint64_t{words[3]} << 32), "ticket");
    proto::EncodePackedCompletion(*c, again);
    proto::PackedWords expected_completion = words;
    expected_completion[protocol::kWordOpcode] = 0;
    MK_FUZZ_CHECK(proto::LoadPackedWords(again) == expected_completion, "completion round trip");
  } else {
    MK_FUZZ_CHECK(absl::IsDataLoss(c.status()) &&
                      absl::StrContains(c.status().message(), absl::StrCat("[", index, "]")),
                  c.status().ToString());
  }

  const size_t bytes = in.U32() % (1u << 20);
  const absl::Status size = proto::CheckPackedSize(bytes, "packed_slots", "slots");
  MK_FUZZ_CHECK(size.ok() == (bytes % proto::kPackedBytes == 0), size.ToString());
}

}  // namespace
}  // namespace mk::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mk::fuzz::Input in(data, size);
  mk::engine::CheckDecode(in);
  mk::engine::CheckEncode(in);
  mk::engine::CheckImages(in);
  return 0;
}
