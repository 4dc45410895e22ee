// Host codec for PACKED_SLOT argument words (layout in protocol.h, namespace `packed`).
// Every inner op the host accepts is executed by the engines; the codec rejects anything an
// engine could not run, so a packed slot never loses an op silently.
#ifndef MK_ENGINE_PACKED_SLOT_H_
#define MK_ENGINE_PACKED_SLOT_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "mk/engine/protocol.h"

namespace mk::engine {

struct InnerOp {
  uint32_t opcode = 0;
  std::vector<uint32_t> args;  // at most packed::kMaxInnerArgs
  friend bool operator==(const InnerOp&, const InnerOp&) = default;
};

using PackedArgs = std::array<uint32_t, protocol::kArgWords>;

absl::StatusOr<PackedArgs> EncodePackedSlot(absl::Span<const InnerOp> ops);
// Bounds-checked decode of all inner ops; INVALID_ARGUMENT names the inner op and field.
absl::StatusOr<std::vector<InnerOp>> DecodePackedSlot(const PackedArgs& args);

}  // namespace mk::engine

#endif  // MK_ENGINE_PACKED_SLOT_H_
