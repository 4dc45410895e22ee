#include "mk/engine/packed_slot.h"

#include "absl/strings/str_cat.h"

namespace mk::engine {

namespace pk = protocol::packed;

namespace {
// Argument count each inner opcode takes (docs/protocol.md, "Opcodes").
constexpr uint32_t kInnerArgc[] = {0, 2, 2, 1, 3, 3};

absl::Status CheckInnerOp(uint32_t i, uint32_t op, uint32_t argc) {
  if (!pk::IsInnerOpcode(op)) {
    return absl::InvalidArgumentError(
        absl::StrCat("packed slot: inner op ", i, " has opcode ", op,
                     "; only the scratch built-ins 0..5 (NOP..MEMCPY) may be packed"));
  }
  if (argc != kInnerArgc[op]) {
    return absl::InvalidArgumentError(absl::StrCat("packed slot: inner op ", i, " (opcode ", op,
                                                   ") has ", argc, " args; it takes ",
                                                   kInnerArgc[op]));
  }
  return absl::OkStatus();
}
}  // namespace

absl::StatusOr<PackedArgs> EncodePackedSlot(absl::Span<const InnerOp> ops) {
  if (ops.empty() || ops.size() > pk::kMaxInnerOps) {
    return absl::InvalidArgumentError(absl::StrCat(
        "packed slot: ", ops.size(), " inner ops; a packed slot holds 1..", pk::kMaxInnerOps));
  }
  PackedArgs out{};
  out[0] = static_cast<uint32_t>(ops.size());
  uint32_t w = 1;
  for (uint32_t i = 0; i < ops.size(); ++i) {
    const uint32_t argc = static_cast<uint32_t>(ops[i].args.size());
    if (absl::Status s = CheckInnerOp(i, ops[i].opcode, argc); !s.ok()) return s;
    if (w + 1 + argc > protocol::kArgWords) {
      return absl::InvalidArgumentError(
          absl::StrCat("packed slot: inner op ", i,
                       " does not fit; the ops need more than the 11 words "
                       "after the count; split them over several slots"));
    }
    out[w++] = pk::HeaderWord(ops[i].opcode, argc);
    for (uint32_t a : ops[i].args) out[w++] = a;
  }
  return out;
}

absl::StatusOr<std::vector<InnerOp>> DecodePackedSlot(const PackedArgs& args) {
  const uint32_t n = args[0];
  if (n == 0 || n > pk::kMaxInnerOps) {
    return absl::InvalidArgumentError(absl::StrCat("packed slot: ARG0 (inner-op count) is ", n,
                                                   "; it must be 1..", pk::kMaxInnerOps));
  }
  std::vector<InnerOp> ops;
  ops.reserve(n);
  uint32_t w = 1;
  for (uint32_t i = 0; i < n; ++i) {
    if (w >= protocol::kArgWords) {
      return absl::InvalidArgumentError(absl::StrCat(
          "packed slot: inner op ", i, " starts past the last argument word; ARG0 says ", n,
          " ops but the records end early"));
    }
    const uint32_t op = pk::HeaderOpcode(args[w]);
    const uint32_t argc = pk::HeaderArgc(args[w]);
    if (absl::Status s = CheckInnerOp(i, op, argc); !s.ok()) return s;
    if (w + 1 + argc > protocol::kArgWords) {
      return absl::InvalidArgumentError(
          absl::StrCat("packed slot: inner op ", i, " arguments run past ARG11"));
    }
    InnerOp inner{op, {}};
    inner.args.assign(args.begin() + w + 1, args.begin() + w + 1 + argc);
    ops.push_back(std::move(inner));
    w += 1 + argc;
  }
  return ops;
}

}  // namespace mk::engine
