// Host-side codec for the ring of 64-byte slots (PROTOCOL.md section 1).
//
// RingView is a non-owning view over a buffer of N x 16 words that may be shared with an engine
// running concurrently (CPU worker threads or a GPU kernel over mapped memory). Every access to a
// STATUS word is atomic; payload words are written before STATUS with release ordering and read
// after STATUS with acquire ordering. The view is cheap to copy; the buffer must outlive it.
#ifndef MK_ENGINE_RING_VIEW_H_
#define MK_ENGINE_RING_VIEW_H_

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
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

// Who performs a status transition; the protocol allows each side different moves.
enum class Actor { kHost, kEngine };

const char* SlotStatusName(SlotStatus status);
const char* FaultCodeName(protocol::FaultCode code);

// OK when `actor` may move a slot from `from` to `to` (PROTOCOL.md section 1 state machine);
// FAILED_PRECONDITION naming both states otherwise.
absl::Status CheckTransition(SlotStatus from, SlotStatus to, Actor actor);

// Decodes 64 raw little-endian bytes (the gRPC packed form). STATUS and TENANT are ignored: the
// server overwrites them. `index` only names the slot in error messages.
absl::StatusOr<SlotPayload> DecodeSlotBytes(absl::Span<const uint8_t> bytes, uint64_t index);
void EncodeSlotBytes(const SlotPayload& payload, SlotStatus status, absl::Span<uint8_t> out);

class RingView {
 public:
  RingView() = default;
  // Rejects empty buffers and sizes that are not a whole number of slots.
  static absl::StatusOr<RingView> Create(absl::Span<uint32_t> words);
  // Rejects pointers not aligned to 4 bytes and lengths that are not a multiple of 64 bytes.
  static absl::StatusOr<RingView> FromBytes(absl::Span<uint8_t> bytes);

  uint32_t slot_count() const { return slot_count_; }
  absl::Span<uint32_t> words() const { return {words_, size_t{slot_count_} * protocol::kSlotWords}; }

  // Checked accessors: OUT_OF_RANGE for an index >= slot_count (u32::MAX included).
  absl::StatusOr<SlotStatus> LoadStatus(uint64_t index) const;
  absl::StatusOr<SlotPayload> Read(uint64_t index) const;
  // Host publish: the slot must be EMPTY; payload words first, STATUS=PUBLISHED last (release).
  absl::Status Publish(uint64_t index, const SlotPayload& payload) const;
  // Atomically moves `index` from `from` to `to` after checking the move is legal for `actor`;
  // FAILED_PRECONDITION when the slot is not in `from` (someone else won).
  absl::Status Transition(uint64_t index, SlotStatus from, SlotStatus to, Actor actor) const;
  // Engine completion: result words then STATUS (DONE or FAULT), release. Slot must be CLAIMED.
  absl::Status Complete(uint64_t index, SlotStatus terminal,
                        absl::Span<const uint32_t> results) const;

  // Unchecked hot-path accessors for engines that validated `index` already.
  uint32_t* slot(uint32_t index) const { return words_ + size_t{index} * protocol::kSlotWords; }
  std::atomic_ref<uint32_t> status_word(uint32_t index) const {
    return std::atomic_ref<uint32_t>(slot(index)[protocol::kWordStatus]);
  }

 private:
  RingView(uint32_t* words, uint32_t slot_count) : words_(words), slot_count_(slot_count) {}
  absl::Status CheckIndex(uint64_t index) const;

  uint32_t* words_ = nullptr;
  uint32_t slot_count_ = 0;
};

}  // namespace mk::engine

#endif  // MK_ENGINE_RING_VIEW_H_
