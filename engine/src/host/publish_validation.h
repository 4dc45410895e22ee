// Validation of a batch before anything reaches the ring. Errors name the slot index and the
// field, and say what to do.
#ifndef MK_ENGINE_SRC_HOST_PUBLISH_VALIDATION_H_
#define MK_ENGINE_SRC_HOST_PUBLISH_VALIDATION_H_

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "mk/engine/slot.h"

namespace mk::engine::host {

// OK when every slot can run: opcode registered (built-in or ProductOpcodes; SHUTDOWN never),
// priority 0..4, unused argument words of fixed-arity opcodes are not checked, BATCH_FENCE count
// within the slots before it in this batch, PACKED_SLOT inner ops decodable.
absl::Status ValidatePublish(absl::Span<const SlotPayload> slots);

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_PUBLISH_VALIDATION_H_
