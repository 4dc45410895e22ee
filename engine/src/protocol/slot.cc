#include "mk/engine/slot.h"

namespace mk::engine {

const char* SlotStatusName(SlotStatus status) {
  switch (status) {
    case SlotStatus::kEmpty:
      return "EMPTY";
    case SlotStatus::kPublished:
      return "PUBLISHED";
    case SlotStatus::kClaimed:
      return "CLAIMED";
    case SlotStatus::kDone:
      return "DONE";
    case SlotStatus::kWaitIo:
      return "WAIT_IO";
    case SlotStatus::kYield:
      return "YIELD";
    case SlotStatus::kRequeue:
      return "REQUEUE";
    case SlotStatus::kFault:
      return "FAULT";
  }
  return "INVALID_STATUS";
}

const char* FaultCodeName(protocol::FaultCode code) {
  using protocol::FaultCode;
  switch (code) {
    case FaultCode::kNone:
      return "NONE";
    case FaultCode::kUnknownOpcode:
      return "UNKNOWN_OPCODE";
    case FaultCode::kOutOfBounds:
      return "OUT_OF_BOUNDS";
    case FaultCode::kBadArgument:
      return "BAD_ARGUMENT";
    case FaultCode::kResourceNotFound:
      return "RESOURCE_NOT_FOUND";
    case FaultCode::kIoError:
      return "IO_ERROR";
    case FaultCode::kEngineRestart:
      return "ENGINE_RESTART";
    case FaultCode::kTenantDisabled:
      return "TENANT_DISABLED";
    case FaultCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
  }
  return "INVALID_FAULT_CODE";
}

}  // namespace mk::engine
