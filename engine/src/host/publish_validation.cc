#include "host/publish_validation.h"

#include "absl/strings/str_cat.h"
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
         opcode == op::kPrintf || opcode == op::kPackedSlot;
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
                                    "(0..8, 0xFFF0, 0xFFFD, 0xFFFE, 0x80000001) or "
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
