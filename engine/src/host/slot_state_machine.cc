#include "host/slot_state_machine.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "mk/base/log.h"
#include "mk/engine/slot.h"

namespace mk::engine::host {

namespace {

using protocol::SlotStatus;

bool HostMayMove(SlotStatus from, SlotStatus to) {
  switch (to) {
    case SlotStatus::kPublished:
      return from == SlotStatus::kEmpty;
    case SlotStatus::kEmpty:  // reap a terminal slot, or cancel an unclaimed one
      return protocol::IsTerminal(from) || protocol::IsClaimable(from);
    case SlotStatus::kFault:  // engine teardown fails whatever was in flight
      return from != SlotStatus::kEmpty && !protocol::IsTerminal(from);
    case SlotStatus::kDone:  // io completion resumes a parked slot
      return from == SlotStatus::kWaitIo;
    default:
      return false;
  }
}

bool EngineMayMove(SlotStatus from, SlotStatus to) {
  switch (to) {
    case SlotStatus::kClaimed:
      return protocol::IsClaimable(from);
    case SlotStatus::kDone:
    case SlotStatus::kFault:
      return from == SlotStatus::kClaimed || from == SlotStatus::kWaitIo;
    case SlotStatus::kWaitIo:
    case SlotStatus::kYield:
    case SlotStatus::kRequeue:
      return from == SlotStatus::kClaimed;
    default:
      return false;
  }
}

}  // namespace

absl::Status CheckTransition(SlotStatus from, SlotStatus to, Actor actor) {
  if (static_cast<uint32_t>(from) >= protocol::kSlotStatusCount ||
      static_cast<uint32_t>(to) >= protocol::kSlotStatusCount) {
    return absl::InvalidArgumentError(
        absl::StrCat("ring: status value out of range (", static_cast<uint32_t>(from), " -> ",
                     static_cast<uint32_t>(to), "); valid statuses are 0..7"));
  }
  const bool legal = actor == Actor::kHost ? HostMayMove(from, to) : EngineMayMove(from, to);
  if (legal) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("ring: illegal transition ", SlotStatusName(from), " -> ", SlotStatusName(to),
                   " by the ", actor == Actor::kHost ? "host" : "engine",
                   "; see the slot state machine in docs/protocol.md"));
}

void AbortOnIllegalTransition(SlotStatus from, SlotStatus to, Actor actor, uint32_t slot_index) {
  if (absl::Status s = CheckTransition(from, to, actor); !s.ok()) {
    base::LogError("slot ", slot_index, ": ", s.message());
    std::abort();
  }
}

}  // namespace mk::engine::host
