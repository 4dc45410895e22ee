// A ring slot as the engine API sees it (docs/protocol.md, "Ring slot"): what a client asks to
// run, and the printable names of slot statuses and fault codes.
#ifndef MK_ENGINE_SLOT_H_
#define MK_ENGINE_SLOT_H_

#include <array>
#include <cstdint>

#include "mk/engine/protocol.h"

namespace mk::engine {

using protocol::SlotStatus;

// What a client asks to run: every slot word but STATUS.
struct SlotPayload {
  uint32_t opcode = protocol::opcode::kNop;
  uint32_t tenant = 0;
  uint32_t priority = protocol::kDefaultPriority;
  std::array<uint32_t, protocol::kArgWords> args{};

  friend bool operator==(const SlotPayload&, const SlotPayload&) = default;
};

// "EMPTY", "PUBLISHED", ... ("INVALID_STATUS" for a value outside the protocol).
const char* SlotStatusName(SlotStatus status);
// "UNKNOWN_OPCODE", "OUT_OF_BOUNDS", ... ("INVALID_FAULT_CODE" for an unknown code).
const char* FaultCodeName(protocol::FaultCode code);

}  // namespace mk::engine

#endif  // MK_ENGINE_SLOT_H_
