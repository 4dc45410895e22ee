// Compiles mk/engine/protocol.h with nothing before it under nvcc, and uses its host/device
// helpers from device code.
#include "mk/engine/protocol.h"

__global__ void ProtocolHeaderProbe(uint32_t* out) {
  constexpr mk::protocol::control::Layout layout{64, 16};
  out[0] = layout.ScratchFirst(3) + mk::protocol::packed::HeaderWord(1, 2);
  out[1] = mk::protocol::IsTerminal(mk::protocol::SlotStatus::kDone) ? 1u : 0u;
}
