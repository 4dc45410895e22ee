#include "host/publish_validation.h"

#include "absl/strings/str_cat.h"
#include "mk/base/status_macros.h"
#include "mk/engine/memory_opcodes.h"
#include "mk/engine/opcode_registry.h"
#include "mk/engine/packed_slot.h"

namespace mk::engine::host {

namespace op = protocol::opcode;

namespace {

absl::Status SlotError(size_t index, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("slot ", index, ": ", field, " ", what));
}

bool IsBuiltin(uint32_t opcode) {
  return opcode <= op::kBatchFence || opcode == op::kChecksum || opcode == op::kLoadMiss ||
         opcode == op::kPrintf || opcode == op::kPackedSlot || protocol::IsMemoryOpcode(opcode);
}

// What a memory opcode's arguments must satisfy without reading memory (the executor checks
// the rest: handles and ranges). The same limits the executors fault on, named here.
absl::Status ValidateMemoryArgs(size_t i, const SlotPayload& s) {
  namespace mem = protocol::memory;
  const auto arg64 = [&](uint32_t lo) { return protocol::Arg64(s.args.data(), lo); };
  const auto too_long = [&](absl::string_view field, uint64_t bytes) {
    return SlotError(i, field,
                     absl::StrCat(bytes, " bytes exceed one slot's ", mem::kMaxSlotBytes,
                                  " (16 MiB); split the work over several slots"));
  };
  switch (s.opcode) {
    case op::kCopy:
      if (arg64(6) > mem::kMaxSlotBytes) return too_long("args[6..7] (COPY length)", arg64(6));
      break;
    case op::kFill:
      if (arg64(3) > mem::kMaxSlotBytes) return too_long("args[3..4] (FILL length)", arg64(3));
      if (s.args[6] > 4 || s.args[6] == 3) {
        return SlotError(i, "args[6] (FILL pattern width)",
                         absl::StrCat(s.args[6], " is not 1, 2 or 4 bytes"));
      }
      break;
    case op::kDfaScan:
      if (arg64(7) > mem::kMaxScanBytes) {
        return SlotError(i, "args[7..8] (DFA_SCAN length)",
                         absl::StrCat(arg64(7), " bytes exceed one slot's ", mem::kMaxScanBytes,
                                      " (256 KiB); split the scan over several slots"));
      }
      if (s.args[3] == 0 || s.args[3] > mem::kMaxDfaStates) {
        return SlotError(i, "args[3] (DFA_SCAN states)",
                         absl::StrCat(s.args[3], " is not 1..", mem::kMaxDfaStates));
      }
      if (s.args[9] >= s.args[3]) {
        return SlotError(i, "args[9] (DFA_SCAN start state)",
                         absl::StrCat(s.args[9], " is not below the ", s.args[3], " states"));
      }
      break;
    case op::kGemv: {
      if (s.args[5] != mem::kDtypeF32 && s.args[5] != mem::kDtypeBf16) {
        return SlotError(i, "args[5] (GEMV dtype)",
                         absl::StrCat(s.args[5], " is neither 0 (f32) nor 1 (bf16)"));
      }
      if (uint64_t{s.args[4]} * 4 > mem::kMaxSlotBytes) {
        return too_long("args[4] (GEMV cols, as f32 x)", uint64_t{s.args[4]} * 4);
      }
      if (uint64_t{s.args[3]} * 4 > mem::kMaxSlotBytes) {
        return too_long("args[3] (GEMV rows, as f32 y)", uint64_t{s.args[3]} * 4);
      }
      // Both factors are below 2^22 now: the product cannot wrap.
      const uint64_t w_bytes =
          uint64_t{s.args[3]} * s.args[4] * (s.args[5] == mem::kDtypeF32 ? 4 : 2);
      if (w_bytes > mem::kMaxSlotBytes) return too_long("args[3..4] (GEMV rows x cols)", w_bytes);
      break;
    }
    case op::kEmbeddingGather: {
      const uint64_t out_bytes = uint64_t{s.args[8]} * s.args[3];
      if (s.args[3] == 0) return SlotError(i, "args[3] (EMBEDDING_GATHER row bytes)", "is 0");
      if (s.args[8] > mem::kMaxGatherRows) {
        return SlotError(i, "args[8] (EMBEDDING_GATHER count)",
                         absl::StrCat(s.args[8], " rows exceed one slot's ", mem::kMaxGatherRows,
                                      "; split the gather over several slots"));
      }
      if (out_bytes > mem::kMaxSlotBytes) {
        return too_long("args[8] x args[3] (EMBEDDING_GATHER count x row bytes)", out_bytes);
      }
      break;
    }
    default:
      break;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidatePublish(absl::Span<const SlotPayload> slots) {
  if (slots.empty()) {
    return absl::InvalidArgumentError("publish: empty batch; send at least one slot");
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    const SlotPayload& s = slots[i];
    // Fast path: scratch built-ins take no validation beyond the priority.
    if (s.opcode <= op::kDfaStep && s.priority < protocol::kPriorityCount) continue;
    if (s.opcode == op::kShutdown) {
      return SlotError(i, "opcode", "0xFFFFFFFF (SHUTDOWN) is admin-only; use the Admin service");
    }
    if (!IsBuiltin(s.opcode) && !protocol::ProductOpcodes::Has(s.opcode)) {
      return SlotError(i, "opcode",
                       absl::StrCat(s.opcode,
                                    " has no registered handler; use a built-in "
                                    "(0..8, 0xFFF0..0xFFF5, 0xFFFD, 0xFFFE, 0x80000001) or "
                                    "register the opcode in opcode_registry.h"));
    }
    if (s.priority >= protocol::kPriorityCount) {
      return SlotError(i, "priority",
                       absl::StrCat(s.priority, " out of range; use 0 CRITICAL .. 4 IDLE"));
    }
    if (s.opcode == op::kBatchFence && s.args[0] > i) {
      return SlotError(
          i, "args[0] (BATCH_FENCE count)",
          absl::StrCat(s.args[0], " exceeds the ", i, " slots before the fence in this batch"));
    }
    if (protocol::IsMemoryOpcode(s.opcode)) MK_RETURN_IF_ERROR(ValidateMemoryArgs(i, s));
    if (s.opcode == op::kPackedSlot) {
      PackedArgs args;
      std::copy(s.args.begin(), s.args.end(), args.begin());
      if (auto ops = DecodePackedSlot(args); !ops.ok()) {
        return SlotError(i, "args (PACKED_SLOT)", ops.status().message());
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mk::engine::host
