#include "mk/engine/ring_view.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace mk::engine {
namespace {

using protocol::kSlotWords;

uint32_t LoadLe32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
void StoreLe32(uint32_t v, uint8_t* p) {
  p[0] = v & 0xFF;
  p[1] = (v >> 8) & 0xFF;
  p[2] = (v >> 16) & 0xFF;
  p[3] = v >> 24;
}

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

const char* SlotStatusName(SlotStatus status) {
  switch (status) {
    case SlotStatus::kEmpty: return "EMPTY";
    case SlotStatus::kPublished: return "PUBLISHED";
    case SlotStatus::kClaimed: return "CLAIMED";
    case SlotStatus::kDone: return "DONE";
    case SlotStatus::kWaitIo: return "WAIT_IO";
    case SlotStatus::kYield: return "YIELD";
    case SlotStatus::kRequeue: return "REQUEUE";
    case SlotStatus::kFault: return "FAULT";
  }
  return "INVALID_STATUS";
}

const char* FaultCodeName(protocol::FaultCode code) {
  using protocol::FaultCode;
  switch (code) {
    case FaultCode::kNone: return "NONE";
    case FaultCode::kUnknownOpcode: return "UNKNOWN_OPCODE";
    case FaultCode::kOutOfBounds: return "OUT_OF_BOUNDS";
    case FaultCode::kBadArgument: return "BAD_ARGUMENT";
    case FaultCode::kResourceNotFound: return "RESOURCE_NOT_FOUND";
    case FaultCode::kIoError: return "IO_ERROR";
    case FaultCode::kEngineRestart: return "ENGINE_RESTART";
    case FaultCode::kTenantDisabled: return "TENANT_DISABLED";
    case FaultCode::kResourceExhausted: return "RESOURCE_EXHAUSTED";
  }
  return "INVALID_FAULT_CODE";
}

absl::Status CheckTransition(SlotStatus from, SlotStatus to, Actor actor) {
  if (static_cast<uint32_t>(from) >= protocol::kSlotStatusCount ||
      static_cast<uint32_t>(to) >= protocol::kSlotStatusCount) {
    return absl::InvalidArgumentError(
        absl::StrCat("ring: status value out of range (", static_cast<uint32_t>(from), " -> ",
                     static_cast<uint32_t>(to), "); valid statuses are 0..7"));
  }
  const bool legal = actor == Actor::kHost ? HostMayMove(from, to) : EngineMayMove(from, to);
  if (legal) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "ring: illegal transition ", SlotStatusName(from), " -> ", SlotStatusName(to), " by the ",
      actor == Actor::kHost ? "host" : "engine", "; see PROTOCOL.md section 1 state machine"));
}

absl::StatusOr<SlotPayload> DecodeSlotBytes(absl::Span<const uint8_t> bytes, uint64_t index) {
  if (bytes.size() != protocol::kSlotBytes) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", index, ": ", bytes.size(),
                                                   " bytes; a packed slot is exactly 64 bytes"));
  }
  SlotPayload p;
  p.opcode = LoadLe32(bytes.data() + 4 * protocol::kWordOpcode);
  p.tenant = LoadLe32(bytes.data() + 4 * protocol::kWordTenant);
  p.priority = LoadLe32(bytes.data() + 4 * protocol::kWordPriority);
  for (uint32_t i = 0; i < protocol::kArgWords; ++i) {
    p.args[i] = LoadLe32(bytes.data() + 4 * (protocol::kWordArg0 + i));
  }
  return p;
}

void EncodeSlotBytes(const SlotPayload& payload, SlotStatus status, absl::Span<uint8_t> out) {
  StoreLe32(static_cast<uint32_t>(status), out.data() + 4 * protocol::kWordStatus);
  StoreLe32(payload.opcode, out.data() + 4 * protocol::kWordOpcode);
  StoreLe32(payload.tenant, out.data() + 4 * protocol::kWordTenant);
  StoreLe32(payload.priority, out.data() + 4 * protocol::kWordPriority);
  for (uint32_t i = 0; i < protocol::kArgWords; ++i) {
    StoreLe32(payload.args[i], out.data() + 4 * (protocol::kWordArg0 + i));
  }
}

absl::StatusOr<RingView> RingView::Create(absl::Span<uint32_t> words) {
  if (words.empty()) {
    return absl::InvalidArgumentError("ring: empty buffer; a ring needs at least one 16-word slot");
  }
  if (words.size() % kSlotWords != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring: buffer of ", words.size(), " words is not a whole number of 16-word slots"));
  }
  if (words.size() / kSlotWords > UINT32_MAX - 1) {
    return absl::InvalidArgumentError("ring: more than 2^32-2 slots");
  }
  return RingView(words.data(), static_cast<uint32_t>(words.size() / kSlotWords));
}

absl::StatusOr<RingView> RingView::FromBytes(absl::Span<uint8_t> bytes) {
  if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(uint32_t) != 0) {
    return absl::InvalidArgumentError(
        "ring: buffer is not 4-byte aligned; allocate ring memory with word alignment");
  }
  if (bytes.size() % protocol::kSlotBytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring: buffer of ", bytes.size(), " bytes is not a whole number of 64-byte slots"));
  }
  return Create({reinterpret_cast<uint32_t*>(bytes.data()), bytes.size() / sizeof(uint32_t)});
}

absl::Status RingView::CheckIndex(uint64_t index) const {
  if (index < slot_count_) return absl::OkStatus();
  return absl::OutOfRangeError(
      absl::StrCat("ring: slot index ", index, " out of range; the ring has ", slot_count_, " slots"));
}

absl::StatusOr<SlotStatus> RingView::LoadStatus(uint64_t index) const {
  if (absl::Status s = CheckIndex(index); !s.ok()) return s;
  return static_cast<SlotStatus>(status_word(index).load(std::memory_order_acquire));
}

absl::StatusOr<SlotPayload> RingView::Read(uint64_t index) const {
  if (absl::Status s = CheckIndex(index); !s.ok()) return s;
  // The acquire load orders the payload reads after the writer's release of STATUS.
  status_word(index).load(std::memory_order_acquire);
  const uint32_t* w = slot(index);
  SlotPayload p;
  p.opcode = w[protocol::kWordOpcode];
  p.tenant = w[protocol::kWordTenant];
  p.priority = w[protocol::kWordPriority];
  std::memcpy(p.args.data(), &w[protocol::kWordArg0], sizeof(p.args));
  return p;
}

absl::Status RingView::Publish(uint64_t index, const SlotPayload& payload) const {
  if (absl::Status s = CheckIndex(index); !s.ok()) return s;
  const auto current = static_cast<SlotStatus>(status_word(index).load(std::memory_order_acquire));
  if (current != SlotStatus::kEmpty) {
    return absl::FailedPreconditionError(absl::StrCat("ring: publish into slot ", index, " which is ",
                                                      SlotStatusName(current),
                                                      "; publish only into EMPTY slots"));
  }
  uint32_t* w = slot(index);
  std::memcpy(&w[protocol::kWordArg0], payload.args.data(), sizeof(payload.args));
  w[protocol::kWordOpcode] = payload.opcode;
  w[protocol::kWordTenant] = payload.tenant;
  w[protocol::kWordPriority] = payload.priority;
  status_word(index).store(static_cast<uint32_t>(SlotStatus::kPublished), std::memory_order_release);
  return absl::OkStatus();
}

absl::Status RingView::Transition(uint64_t index, SlotStatus from, SlotStatus to,
                                  Actor actor) const {
  if (absl::Status s = CheckIndex(index); !s.ok()) return s;
  if (absl::Status s = CheckTransition(from, to, actor); !s.ok()) return s;
  uint32_t expected = static_cast<uint32_t>(from);
  if (status_word(index).compare_exchange_strong(expected, static_cast<uint32_t>(to),
                                                 std::memory_order_acq_rel)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "ring: slot ", index, " is ", SlotStatusName(static_cast<SlotStatus>(expected)),
      ", expected ", SlotStatusName(from), "; another actor moved it first"));
}

absl::Status RingView::Complete(uint64_t index, SlotStatus terminal,
                                absl::Span<const uint32_t> results) const {
  if (absl::Status s = CheckIndex(index); !s.ok()) return s;
  if (!protocol::IsTerminal(terminal)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring: complete slot ", index, " with ", SlotStatusName(terminal), "; use DONE or FAULT"));
  }
  if (results.size() > protocol::kArgWords) {
    return absl::InvalidArgumentError(absl::StrCat("ring: ", results.size(),
                                                   " result words; a slot holds at most 12"));
  }
  const auto current = static_cast<SlotStatus>(status_word(index).load(std::memory_order_acquire));
  if (absl::Status s = CheckTransition(current, terminal, Actor::kEngine); !s.ok()) return s;
  uint32_t* w = slot(index);
  for (size_t i = 0; i < results.size(); ++i) w[protocol::kWordArg0 + i] = results[i];
  status_word(index).store(static_cast<uint32_t>(terminal), std::memory_order_release);
  return absl::OkStatus();
}

}  // namespace mk::engine
