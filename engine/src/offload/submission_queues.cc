#include "offload/submission_queues.h"

#include <emmintrin.h>

#include "absl/strings/str_cat.h"
#include "mk/base/page_memory.h"

namespace mk::engine::offload {

absl::StatusOr<std::unique_ptr<SubmissionQueues>> SubmissionQueues::Create(
    const QueueShape& shape) {
  if (shape.shards == 0 || shape.shards > kMaxShards || shape.blocks == 0 ||
      shape.sq_capacity == 0 || (shape.sq_capacity & (shape.sq_capacity - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("offload: ", shape.shards, " submission queues of ", shape.sq_capacity,
                     " entries for ", shape.blocks, " blocks; use 1..", kMaxShards,
                     " queues, a power-of-two capacity and "
                     "at least one block"));
  }
  std::unique_ptr<SubmissionQueues> queues(new SubmissionQueues(shape));
  if (queues->control_page_ == nullptr || queues->sq_ == nullptr || queues->cq_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("offload: cannot allocate the ", queues->sq_bytes_ + queues->cq_bytes_,
                     " bytes of submission and completion queues; lower --ring_slots"));
  }
  return queues;
}

SubmissionQueues::SubmissionQueues(const QueueShape& shape)
    : shape_(shape),
      control_page_bytes_(base::PageRoundUp(sizeof(Doorbell) + shape.blocks * sizeof(uint32_t))),
      sq_bytes_(
          base::PageRoundUp(shape.shards * shape.sq_capacity * kEntryWords * sizeof(uint64_t))),
      cq_bytes_(base::PageRoundUp(shape.shards * shape.sq_capacity * kCompletionWords *
                                  sizeof(uint64_t))),
      control_page_(static_cast<uint8_t*>(base::AllocatePages(control_page_bytes_))),
      sq_(static_cast<uint64_t*>(base::AllocatePages(sq_bytes_))),
      cq_(static_cast<uint64_t*>(base::AllocatePages(cq_bytes_))) {
  if (control_page_ == nullptr) return;
  doorbell_ = reinterpret_cast<Doorbell*>(control_page_.get());
  block_idle_ = reinterpret_cast<uint32_t*>(control_page_.get() + sizeof(Doorbell));
}

void SubmissionQueues::WriteEntry(uint32_t shard, uint64_t position, uint32_t ring_index,
                                  const uint32_t* slot, bool streaming) {
  uint64_t* entry = sq_.get() + QueueIndex(shard, position) * kEntryWords;
  const uint32_t tag =
      paused_.load(std::memory_order_relaxed) ? kHeldEntryTag : PositionTag(position);
  // Four values at a time, interleaved with the tag into two 16-byte stores of two tagged words
  // each. An aligned 16-byte store never tears an aligned 8-byte half, which is all a tagged
  // word needs.
  const __m128i tags = _mm_set1_epi32(static_cast<int>(tag));
  const __m128i values[4] = {
      _mm_set_epi32(static_cast<int>(slot[3]), static_cast<int>(slot[2]), static_cast<int>(slot[1]),
                    static_cast<int>(ring_index)),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(slot + 4)),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(slot + 8)),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(slot + 12)),
  };
  static_assert(kEntryWords == 16, "four groups of four values");
  auto* out = reinterpret_cast<__m128i*>(entry);
  for (ptrdiff_t i = 0; i < 4; ++i) {
    const __m128i low = _mm_unpacklo_epi32(values[i], tags);
    const __m128i high = _mm_unpackhi_epi32(values[i], tags);
    if (streaming) {
      _mm_stream_si128(out + 2 * i, low);
      _mm_stream_si128(out + 2 * i + 1, high);
    } else {
      _mm_store_si128(out + 2 * i, low);
      _mm_store_si128(out + 2 * i + 1, high);
    }
  }
}

void SubmissionQueues::PublishTail(uint32_t shard, uint64_t tail, bool streamed) {
  if (streamed) _mm_sfence();  // non-temporal stores are not ordered by the release store
  std::atomic_ref<uint64_t>(doorbell_->shard[shard].sq_tail).store(tail, std::memory_order_release);
}

ShardDoorbell SubmissionQueues::ReadDoorbell(uint32_t shard) const {
  ShardDoorbell& d = doorbell_->shard[shard];
  ShardDoorbell out;
  out.sq_tail = std::atomic_ref<uint64_t>(d.sq_tail).load(std::memory_order_acquire);
  out.stop = std::atomic_ref<uint32_t>(d.stop).load(std::memory_order_acquire);
  out.paused = std::atomic_ref<uint32_t>(d.paused).load(std::memory_order_acquire);
  return out;
}

void SubmissionQueues::SetFlag(uint32_t ShardDoorbell::*flag, uint32_t value) {
  for (ShardDoorbell& d : doorbell_->shard) {
    std::atomic_ref<uint32_t>(d.*flag).store(value, std::memory_order_seq_cst);
  }
}

void SubmissionQueues::SetPaused(bool paused) {
  // The host-side flag first: every entry written after SetPaused(true) returns is held.
  paused_.store(paused, std::memory_order_seq_cst);
  SetFlag(&ShardDoorbell::paused, paused ? 1 : 0);
}

void SubmissionQueues::ResetForLaunch(const uint64_t* first_positions) {
  for (uint32_t b = 0; b < shape_.blocks; ++b) SetBlockIdle(b, false);
  SetPaused(false);
  SetFlag(&ShardDoorbell::stop, 0);
  for (uint32_t s = 0; s < shape_.shards; ++s) PublishTail(s, first_positions[s], false);
}

uint32_t SubmissionQueues::IdleBlocks() const {
  uint32_t idle = 0;
  for (uint32_t b = 0; b < shape_.blocks; ++b) {
    idle += std::atomic_ref<uint32_t>(block_idle_[b]).load(std::memory_order_acquire) != 0;
  }
  return idle;
}

}  // namespace mk::engine::offload
