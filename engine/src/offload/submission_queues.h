// SubmissionQueues: the memory an offload engine's host side and its kernel share, laid out as
// kernel_abi.h says (who writes and reads each part is written there): the doorbell page (each
// shard's tail with the stop and paused flags, then one idle flag per kernel block), the
// submission queues (tagged 128-byte entries) and the completion queues (tagged 128-byte
// records). All of it is page-aligned host memory: the CUDA engine registers it with the GPU as
// mapped memory, the host-thread kernel reads it directly.
//
// Thread safety: WriteEntry and PublishTail for a shard are called by one dispatcher at a time
// (the engine's per-shard lock); completion() is read by the shard's reaper; the flags and idle
// counts may be used from any thread. Lifetime: owned by the KernelPort that serves it.
#ifndef MK_ENGINE_SRC_OFFLOAD_SUBMISSION_QUEUES_H_
#define MK_ENGINE_SRC_OFFLOAD_SUBMISSION_QUEUES_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "mk/base/page_memory.h"
#include "offload/kernel_abi.h"

namespace mk::engine::offload {

struct QueueShape {
  uint32_t shards = 1;       // submission queues (1..kMaxShards)
  uint64_t sq_capacity = 0;  // entries per shard: a power of two >= the ring's slots
  uint32_t blocks = 1;       // kernel blocks, one idle flag each
};

class SubmissionQueues {
 public:
  // INVALID_ARGUMENT for a shape out of range; RESOURCE_EXHAUSTED without the memory.
  static absl::StatusOr<std::unique_ptr<SubmissionQueues>> Create(const QueueShape& shape);
  SubmissionQueues(const SubmissionQueues&) = delete;
  SubmissionQueues& operator=(const SubmissionQueues&) = delete;

  const QueueShape& shape() const { return shape_; }

  // ---- The host dispatcher ----
  // Writes SQ entry `position` of `shard`: `ring_index` (the ring slot, with
  // kEntryLastOfDispatch on a dispatch's last entry) and words 1..15 of `slot`, each word
  // tagged with the position (kHeldEntryTag while paused). The dispatcher calls it for entries
  // the kernel may not read yet, then PublishTail.
  // `streaming`: with non-temporal stores, for dispatches of a batch. The entry's two lines are
  // written whole, so they need not be read for ownership first, and they leave the caches to
  // the ring. A dispatch of a few slots keeps ordinary stores: PublishTail's fence would wait
  // for its lines to reach memory on the request's path.
  void WriteEntry(uint32_t shard, uint64_t position, uint32_t ring_index, const uint32_t* slot,
                  bool streaming);
  // Makes shard `shard`'s entries before `tail` visible to the kernel: a release store of the
  // doorbell, after a store fence when some were `streamed`.
  void PublishTail(uint32_t shard, uint64_t tail, bool streamed);

  // ---- The host reaper ----
  const uint64_t* completion(uint32_t shard, uint64_t position) const {
    return cq_.get() + QueueIndex(shard, position) * kCompletionWords;
  }

  // ---- The kernel's side (the host-thread kernel; a GPU reads the mapped copies) ----
  const uint64_t* entry(uint32_t shard, uint64_t position) const {
    return sq_.get() + QueueIndex(shard, position) * kEntryWords;
  }
  uint64_t* mutable_completion(uint32_t shard, uint64_t position) {
    return cq_.get() + QueueIndex(shard, position) * kCompletionWords;
  }
  // The shard's doorbell as one reader sees it: tail (acquire), then the flags.
  ShardDoorbell ReadDoorbell(uint32_t shard) const;
  void SetBlockIdle(uint32_t block, bool idle) {
    std::atomic_ref<uint32_t>(block_idle_[block]).store(idle ? 1 : 0, std::memory_order_release);
  }

  // ---- Flags, from any thread ----
  // Paused: the kernel claims nothing, and entries written from now on are held (untagged), so
  // a paused kernel never starts one speculatively.
  void SetPaused(bool paused);
  void RequestStop() { SetFlag(&ShardDoorbell::stop, 1); }
  // Before a launch: no stop, not paused, no block idle, shard s's tail at first_positions[s].
  void ResetForLaunch(const uint64_t* first_positions);
  uint32_t IdleBlocks() const;

  // ---- Raw memory, for a device to register and map ----
  struct Region {
    uint8_t* data;
    size_t bytes;  // whole pages
  };
  Region control_page() const { return {control_page_.get(), control_page_bytes_}; }
  Region submission_region() const { return {reinterpret_cast<uint8_t*>(sq_.get()), sq_bytes_}; }
  Region completion_region() const { return {reinterpret_cast<uint8_t*>(cq_.get()), cq_bytes_}; }
  Doorbell* doorbell() const { return doorbell_; }
  uint32_t* block_idle() const { return block_idle_; }
  uint64_t* cq() const { return cq_.get(); }

 private:
  explicit SubmissionQueues(const QueueShape& shape);
  // Where entry `position` of `shard` sits in the submission (and completion) queues.
  uint64_t QueueIndex(uint32_t shard, uint64_t position) const {
    return uint64_t{shard} * shape_.sq_capacity + (position & (shape_.sq_capacity - 1));
  }
  // Writes `flag` (stop or paused) into every shard's doorbell copy.
  void SetFlag(uint32_t ShardDoorbell::*flag, uint32_t value);

  const QueueShape shape_;
  size_t control_page_bytes_ = 0, sq_bytes_ = 0, cq_bytes_ = 0;
  base::PagePtr<uint8_t[]> control_page_;
  base::PagePtr<uint64_t[]> sq_;
  base::PagePtr<uint64_t[]> cq_;
  Doorbell* doorbell_ = nullptr;     // in control_page_
  uint32_t* block_idle_ = nullptr;   // in control_page_, after the doorbell
  std::atomic<bool> paused_{false};  // SetPaused: entries are written held
};

}  // namespace mk::engine::offload

#endif  // MK_ENGINE_SRC_OFFLOAD_SUBMISSION_QUEUES_H_
