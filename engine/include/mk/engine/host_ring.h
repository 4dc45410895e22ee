// HostRing: an in-process ring buffer (N x 64-byte slots in 64-byte-aligned host memory) with a
// multi-producer publisher and a consumer that claims, completes and reaps slots through the
// protocol's state machine. Tests use it as the reference producer/consumer pair; the CPU engine
// allocates its ring through it.
//
// Thread safety: Publish may be called from any number of threads; ClaimNext/Complete from any
// number of consumer threads; Reap from any thread. A slot is owned by exactly one party at a
// time as the status word says; `reserved_` closes the window between a producer choosing an
// EMPTY slot and publishing it.
#ifndef MK_ENGINE_HOST_RING_H_
#define MK_ENGINE_HOST_RING_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "mk/engine/ring_view.h"

namespace mk::engine {

class RingProducer {
 public:
  virtual ~RingProducer() = default;
  // Publishes into some EMPTY slot and returns its index; RESOURCE_EXHAUSTED when none is free.
  virtual absl::StatusOr<uint32_t> Publish(const SlotPayload& payload) = 0;
};

struct ReapedSlot {
  uint32_t index = 0;
  SlotStatus status = SlotStatus::kEmpty;  // DONE or FAULT
  SlotPayload payload;                     // args hold the result words
};

class RingConsumer {
 public:
  virtual ~RingConsumer() = default;
  // Claims one claimable slot (PUBLISHED|YIELD|REQUEUE -> CLAIMED), or nullopt when none is.
  virtual std::optional<uint32_t> ClaimNext() = 0;
  virtual absl::Status Complete(uint32_t index, SlotStatus terminal,
                                absl::Span<const uint32_t> results) = 0;
  // Copies a terminal slot out and returns it to EMPTY; FAILED_PRECONDITION if not terminal.
  virtual absl::StatusOr<ReapedSlot> Reap(uint32_t index) = 0;
};

class HostRing final : public RingProducer, public RingConsumer {
 public:
  // INVALID_ARGUMENT for 0 slots or more than 2^26 (4 GiB of slots).
  static absl::StatusOr<std::unique_ptr<HostRing>> Create(uint32_t slot_count);
  ~HostRing() override;
  HostRing(const HostRing&) = delete;
  HostRing& operator=(const HostRing&) = delete;

  const RingView& view() const { return view_; }
  uint32_t slot_count() const { return view_.slot_count(); }

  absl::StatusOr<uint32_t> Publish(const SlotPayload& payload) override;
  std::optional<uint32_t> ClaimNext() override;
  absl::Status Complete(uint32_t index, SlotStatus terminal,
                        absl::Span<const uint32_t> results) override;
  absl::StatusOr<ReapedSlot> Reap(uint32_t index) override;

 private:
  HostRing(uint32_t* words, uint32_t slot_count);

  uint32_t* words_;  // owned, 64-byte aligned, freed in the destructor
  RingView view_;
  std::unique_ptr<std::atomic<uint8_t>[]> reserved_;  // 1 from producer pick until reap
  std::atomic<uint32_t> publish_cursor_{0};
  std::atomic<uint32_t> claim_cursor_{0};
};

}  // namespace mk::engine

#endif  // MK_ENGINE_HOST_RING_H_
