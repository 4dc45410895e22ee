// The ring's swappable ends, as the reference runtime defines them (docs/protocol.md,
// "Producer and consumer interfaces"): a producer publishes encoded 64-byte slot images into the
// ring; a consumer reads slots back and counts finished ones. The engines' ring type implements
// both over its own memory (engine/src/host/partitioned_ring.h), so code that holds such a ring
// (its tests; a broker or a device-side producer to come) can swap either end. No engine hands
// out its ring: clients reach an engine only through mk/engine/engine.h.
//
// Errors, the same for every implementation: INVALID_ARGUMENT for an image that is not exactly
// 64 bytes; OUT_OF_RANGE for a slot index past the ring (UINT32_MAX included);
// FAILED_PRECONDITION for a publish into a slot that is not EMPTY; DATA_LOSS for ring bytes that
// break the protocol (a STATUS word that is no slot status).
//
// Images are the packed form (mk/proto/packed_codec.h): 16 little-endian words in slot order.
// Thread safety: as each implementation says.
#ifndef MK_ENGINE_RING_PORTS_H_
#define MK_ENGINE_RING_PORTS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mk::engine {

class RingProducer {
 public:
  virtual ~RingProducer() = default;
  // Writes the image's payload words (OPCODE .. ARG11; its STATUS word is ignored) into slot
  // `slot_index`, then STATUS = PUBLISHED with release ordering, so a consumer that sees the
  // status sees the payload. The slot must be EMPTY; of producers racing for one slot, one wins
  // and the others get FAILED_PRECONDITION.
  virtual absl::Status Publish(uint32_t slot_index, absl::Span<const char> image) = 0;
  virtual uint32_t slot_count() const = 0;
  // Names the producer in messages and telemetry.
  virtual absl::string_view name() const = 0;
};

class RingConsumer {
 public:
  virtual ~RingConsumer() = default;
  // Copies slot `slot_index` into `image` (64 bytes): STATUS read first with acquire ordering,
  // then the other words, so the payload is at least as new as the status. The copy is
  // consistent for a slot at rest (nobody writing it: PUBLISHED and unclaimed, or DONE / FAULT
  // not yet reaped); a slot being rewritten may read as a mix of old and new words.
  virtual absl::Status ReadSlot(uint32_t slot_index, absl::Span<char> image) const = 0;
  // Walks the ring counting DONE slots. DATA_LOSS names the first slot whose STATUS word holds
  // no slot status.
  virtual absl::StatusOr<uint64_t> DoneCount() const = 0;
  virtual uint32_t slot_count() const = 0;
};

}  // namespace mk::engine

#endif  // MK_ENGINE_RING_PORTS_H_
