// Host-side codec for the io queue (docs/protocol.md, "Io queue and LOAD_MISS").
//
// IoQueueView is a non-owning view over N x 8 words shared between engine workers (which publish
// requests) and the host io loop (which claims, completes and recycles them). STATUS words are
// accessed atomically: claim is a compare-and-swap so each request is claimed exactly once.
#ifndef MK_ENGINE_IO_QUEUE_H_
#define MK_ENGINE_IO_QUEUE_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "mk/engine/protocol.h"

namespace mk::engine {

struct IoRequest {
  protocol::io::OpType op = protocol::io::OpType::kRead;
  uint32_t resource_id = 0;  // SRC_HANDLE
  uint32_t residency = 0;    // DST_HANDLE
  uint64_t offset = 0;
  uint32_t byte_count = 0;
  uint32_t tag = 0;  // ring slot waiting on it
  friend bool operator==(const IoRequest&, const IoRequest&) = default;
};

struct IoCompletion {
  uint32_t index = 0;
  bool ok = true;
  uint32_t error_number = 0;  // positive errno when !ok; written to BYTE_COUNT
};

class IoQueueView {
 public:
  IoQueueView() = default;
  // Rejects buffers that are not a whole number of 8-word slots or hold fewer than 64 slots.
  static absl::StatusOr<IoQueueView> Create(absl::Span<uint32_t> words);

  uint32_t slot_count() const { return slot_count_; }

  // Engine side: takes an EMPTY slot with a compare-and-swap (scanning from `hint`), writes the
  // request, STATUS=PUBLISHED last. RESOURCE_EXHAUSTED when every slot is taken: the caller
  // must REQUEUE its ring slot, never drop the request.
  absl::StatusOr<uint32_t> Publish(const IoRequest& request, uint32_t hint = 0) const;

  // Host side. Poll appends the indices of PUBLISHED requests to `out` (cleared first, capacity
  // reused).
  void Poll(std::vector<uint32_t>* out) const;
  // PUBLISHED -> CLAIMED exactly once; FAILED_PRECONDITION for any other state.
  absl::StatusOr<IoRequest> Claim(uint32_t index) const;
  // CLAIMED -> OK | ERROR. FAILED_PRECONDITION when the slot was not claimed.
  absl::Status Complete(const IoCompletion& completion) const;
  // Validates every completion first (all claimed, indices in range, no duplicates); mutates
  // nothing unless all are valid.
  absl::Status CompleteBatch(absl::Span<const IoCompletion> completions) const;
  // OK | ERROR -> EMPTY, after the waiting ring slot has been resumed.
  absl::Status Recycle(uint32_t index) const;

  absl::StatusOr<protocol::io::IoStatus> LoadStatus(uint32_t index) const;
  absl::StatusOr<IoRequest> Read(uint32_t index) const;

 private:
  IoQueueView(uint32_t* words, uint32_t slot_count) : words_(words), slot_count_(slot_count) {}
  absl::Status CheckIndex(uint32_t index) const;
  std::atomic_ref<uint32_t> status_word(uint32_t index) const {
    return std::atomic_ref<uint32_t>(
        words_[size_t{index} * protocol::io::kSlotWords + protocol::io::kWordStatus]);
  }
  absl::Status MoveStatus(uint32_t index, protocol::io::IoStatus from, protocol::io::IoStatus to,
                          const char* what) const;

  uint32_t* words_ = nullptr;
  uint32_t slot_count_ = 0;
};

const char* IoStatusName(protocol::io::IoStatus status);

}  // namespace mk::engine

#endif  // MK_ENGINE_IO_QUEUE_H_
