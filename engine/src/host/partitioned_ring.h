// PartitionedRing: the one ring of every engine (docs/protocol.md, "Ring slot"): N x 64-byte
// slots in page-aligned host memory (an executor may register them with a device), each slot's
// host bookkeeping (SlotMeta), and five contiguous partitions, one per priority (control words
// 129..134 record where they start).
//
// Each partition is a FIFO over 64-bit sequence numbers with four cursors:
//   tail <= claim <= frontier <= reserve
// - reserve: the next sequence to hand out. Reserve takes a publish's sequences under one mutex
//   (capacity against the tail, nothing else); the caller writes its slots without the lock
//   (producers write in parallel) and Commit waits until `frontier` reaches its first sequence
//   (every earlier reservation committed) and moves it past its last (release): executors only
//   ever see whole publishes, in reservation order.
// - claim: the next sequence an executor may take; ClaimBatch advances it with a
//   compare-and-swap, a single-owner claim of a contiguous range. The executor then moves each
//   slot PUBLISHED -> CLAIMED with a compare-and-swap (which loses to a concurrent cancel).
// - tail: everything before it is EMPTY and reusable. AdvanceTail walks EMPTY slots in
//   [tail, claim); a slot that stays PUBLISHED (a disabled tenant's) or REQUEUE (a waiting
//   fence) holds it. The slots the tail passes go back to their tenants' shares
//   (TenantShares::Release, when one is attached): a slot counts against its tenant until its
//   room is reusable, not merely until it completed, so the slots tenants hold add up to the
//   partition's in-flight span [tail, reserve) and the headroom the shares keep free is room in
//   the FIFO (executors finish out of order: a completed slot behind an older running one still
//   takes room).
//
// WriteOutcome is the one writer of a slot's outcome (results, then DONE or FAULT, release);
// it, MoveStatus and StoreStatus check their moves against the slot state machine in builds
// with assertions.
// The ring also implements the reference design's producer and consumer ports
// (mk/engine/ring_ports.h) over the same memory, for code that holds the ring itself (its
// tests, a future broker); no engine exposes its ring. The engine's own producers publish
// through Reserve / Commit, which also take tickets and fences into account, and its executors
// claim through the partition cursors: a slot published through the port moves no cursor, so
// consumers and executors that scan statuses see it, this engine's executors do not. The port's
// Publish calls are serialized among themselves (a second producer racing for a slot gets
// FAILED_PRECONDITION), not against Reserve / Commit: never mix the two on one ring's slots.
// ReadSlot copies a slot consistently only while nobody writes it (a slot at rest: PUBLISHED
// and unclaimed, or DONE / FAULT before its reap); a slot in motion may read as a mix of its
// old and new words.
//
// Thread safety: every method may be called from any thread. Lifetime: the slots and metas live
// as long as the ring.
#ifndef MK_ENGINE_SRC_HOST_PARTITIONED_RING_H_
#define MK_ENGINE_SRC_HOST_PARTITIONED_RING_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "host/prefetch.h"
#include "host/slot_state_machine.h"
#include "host/tenant_shares.h"
#include "mk/base/page_memory.h"
#include "mk/engine/engine.h"
#include "mk/engine/interpreter.h"
#include "mk/engine/ring_ports.h"
#include "mk/engine/telemetry.h"

namespace mk::engine::host {

inline constexpr uint32_t kNoFence = UINT32_MAX;

// Host-side bookkeeping of one ring slot, written by the publisher before the frontier moves.
struct SlotMeta {
  std::atomic<uint64_t> ticket{0};
  uint64_t publish_ns = 0;           // steady-clock time of the Publish call; 0 when not collected
  CompletionSink* sink = nullptr;    // nullptr: the engine's CompletionStore
  uint32_t fence_waiter = kNoFence;  // ring index of the BATCH_FENCE waiting on this slot
  std::atomic<uint32_t> fence_pending{0};  // for a fence: predecessors not yet terminal
};

// A contiguous run of one partition's sequences [begin, end).
struct ClaimRange {
  uint32_t partition = 0;
  uint64_t begin = 0;
  uint64_t end = 0;
};

using PriorityCounts = std::array<uint32_t, protocol::kPriorityCount>;

class PartitionedRing final : public RingProducer, public RingConsumer {
 public:
  static constexpr uint32_t kMaxSlots = 1u << 26;
  // Partition sizes follow `weights` (CRITICAL..IDLE, each 1..1024; NORMAL takes the rounding
  // remainder, every partition at least 2 slots). INVALID_ARGUMENT for fewer than 10 or more
  // than kMaxSlots slots or a weight out of range; RESOURCE_EXHAUSTED without the memory.
  static absl::StatusOr<std::unique_ptr<PartitionedRing>> Create(
      uint32_t slot_count, const std::array<uint32_t, protocol::kPriorityCount>& weights);
  ~PartitionedRing() override;
  PartitionedRing(const PartitionedRing&) = delete;
  PartitionedRing& operator=(const PartitionedRing&) = delete;

  uint32_t slot_count() const override { return slot_count_; }
  // Slot `index`'s 16 words (unchecked: callers hold an index the ring gave them).
  uint32_t* slot(uint32_t index) const {
    return words_.get() + size_t{index} * protocol::kSlotWords;
  }
  std::atomic_ref<uint32_t> status(uint32_t index) const { return StatusWord(slot(index)); }
  // The STATUS word of the slot at `w` (= slot(index)). Paths that touch a slot several times
  // compute its address once and use the slot-address forms below.
  static std::atomic_ref<uint32_t> StatusWord(uint32_t* w) {
    return std::atomic_ref<uint32_t>(w[protocol::kWordStatus]);
  }
  SlotMeta& meta(uint32_t index) const { return meta_[index]; }
  // Every slot's words (the full telemetry decode reads them all).
  absl::Span<const uint32_t> words() const {
    return {words_.get(), size_t{slot_count_} * protocol::kSlotWords};
  }
  uint32_t partition_first(uint32_t partition) const { return partitions_[partition].first; }
  uint32_t partition_size(uint32_t partition) const { return partitions_[partition].size; }
  PriorityCounts partition_sizes() const {
    PriorityCounts sizes{};
    for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) sizes[p] = partitions_[p].size;
    return sizes;
  }

  // Gives the slots the tail passes back to `shares` (each to the tenant in its TENANT word).
  // Call before any slot is published; `shares` must outlive the ring's last AdvanceTail.
  void AttachShares(TenantShares* shares) { shares_ = shares; }

  // ---- Publishing (SlotPublisher) ----
  // The sequences one publish takes in each partition. Holds the reservation mutex from
  // Reserve until Unlock, so what the caller does in between (issuing tickets) happens in
  // reservation order.
  class Reservation {
   public:
    uint64_t first_sequence(uint32_t partition) const { return first_[partition]; }
    uint32_t count(uint32_t partition) const { return count_[partition]; }
    void Unlock() { lock_.unlock(); }

   private:
    friend class PartitionedRing;
    std::unique_lock<std::mutex> lock_;
    PriorityCounts count_{};
    std::array<uint64_t, protocol::kPriorityCount> first_{};
  };
  // Takes `wanted[p]` sequences of each partition p. INVALID_ARGUMENT when a batch alone
  // exceeds its partition; RESOURCE_EXHAUSTED when the partition has no room now.
  absl::StatusOr<Reservation> Reserve(const PriorityCounts& wanted);
  // Makes the reservation's slots (written, STATUS=PUBLISHED) visible to executors, after every
  // earlier reservation. Call it after Unlock.
  void Commit(const Reservation& reservation);

  // ---- Claiming (executors) ----
  bool HasClaimable(uint32_t partition) const {
    const Partition& part = partitions_[partition];
    return part.claim.load(std::memory_order_acquire) !=
           part.frontier.load(std::memory_order_acquire);
  }
  bool HasAnyClaimable() const;
  // Claims up to `max` committed sequences of `partition`; false when there are none.
  bool ClaimBatch(uint32_t partition, uint32_t max, ClaimRange* out);

  // ---- Indices ----
  uint32_t IndexOf(uint32_t partition, uint64_t sequence) const {
    const Partition& part = partitions_[partition];
    return part.first + static_cast<uint32_t>(sequence % part.size);
  }
  // The ring index `distance` (< the partition's size) sequences after `index` of `partition`.
  uint32_t Advance(uint32_t partition, uint32_t index, uint32_t distance) const {
    return partitions_[partition].Advance(index, distance);
  }
  uint32_t PartitionOf(uint32_t index) const;
  // Calls fn(ring index) for each sequence of the range, in order, without a division per slot.
  template <typename Fn>
  void ForEachIndex(const ClaimRange& range, Fn&& fn) const;

  // ---- Status changes ----
  // The one writer of a slot's outcome: `result.status` is DONE or FAULT; the result words
  // (the rest zeroed), then STATUS with release ordering. `actor`: who moves the slot (the
  // executor finishing it, or the host resuming or failing it).
  // Each has a form taking the slot's address `w` (= slot(index)) as well; `index` then only
  // names the slot in the state machine's check.
  void WriteOutcome(uint32_t index, const protocol::ExecResult& result, Actor actor) {
    WriteOutcome(slot(index), index, result, actor);
  }
  static void WriteOutcome(uint32_t* w, uint32_t index, const protocol::ExecResult& result,
                           Actor actor) {
    MK_DCHECK_TRANSITION(
        static_cast<protocol::SlotStatus>(StatusWord(w).load(std::memory_order_relaxed)),
        result.status, actor, index);
    std::copy(result.results, result.results + result.result_count, w + protocol::kWordArg0);
    std::fill(w + protocol::kWordArg0 + result.result_count, w + protocol::kSlotWords, 0u);
    StatusWord(w).store(static_cast<uint32_t>(result.status), std::memory_order_release);
  }
  // Moves `index` from `from` to `to` with a compare-and-swap; false when it was not in `from`.
  bool MoveStatus(uint32_t index, protocol::SlotStatus from, protocol::SlotStatus to,
                  Actor actor) const {
    return MoveStatus(slot(index), index, from, to, actor);
  }
  static bool MoveStatus(uint32_t* w, uint32_t index, protocol::SlotStatus from,
                         protocol::SlotStatus to, Actor actor) {
    MK_DCHECK_TRANSITION(from, to, actor, index);
    uint32_t expected = static_cast<uint32_t>(from);
    return StatusWord(w).compare_exchange_strong(expected, static_cast<uint32_t>(to),
                                                 std::memory_order_acq_rel);
  }
  // Stores `to` into a slot no other thread may move now (the publisher's slot before Commit,
  // the executor's CLAIMED slot), with `order`; checked like the moves above.
  static void StoreStatus(uint32_t* w, uint32_t index, protocol::SlotStatus to, Actor actor,
                          std::memory_order order) {
    MK_DCHECK_TRANSITION(
        static_cast<protocol::SlotStatus>(StatusWord(w).load(std::memory_order_relaxed)), to, actor,
        index);
    StatusWord(w).store(static_cast<uint32_t>(to), order);
  }
  // A slot of a batch left the ring's in-flight states: tells the fence waiting on it. True when
  // that fence has no predecessors left (whoever gets true makes the fence ready). Read the
  // slot's meta().fence_waiter before the slot can be reaped.
  bool ReleaseFence(uint32_t fence_index) {
    return meta_[fence_index].fence_pending.fetch_sub(1, std::memory_order_acq_rel) == 1;
  }

  // ---- Retiring memory slots may still use (BufferTable) ----
  using Sequences = std::array<uint64_t, protocol::kPriorityCount>;
  // Every partition's next sequence to hand out: the slots published so far lie below it.
  Sequences ReserveSnapshot() const {
    std::lock_guard<std::mutex> lock(reserve_mu_);
    Sequences out{};
    for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) out[p] = partitions_[p].reserve;
    return out;
  }
  // True when every slot below `snapshot` has left the ring (each partition's tail passed it).
  bool TailsPassed(const Sequences& snapshot) const {
    for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
      if (partitions_[p].tail.load(std::memory_order_acquire) < snapshot[p]) return false;
    }
    return true;
  }

  // ---- Recycling and inspection ----
  // Moves the tail over the EMPTY slots at its head and gives them back to their tenants'
  // shares.
  void AdvanceTail(uint32_t partition);
  // Calls fn(ring index) for every committed slot of `partition` not yet behind the tail
  // (cancellation looks for tickets there).
  void ForEachCommitted(uint32_t partition, absl::FunctionRef<void(uint32_t)> fn) const;
  // Occupancy from the in-flight windows only: every slot outside [tail, reserve) of its
  // partition is EMPTY by construction, so a lightly loaded ring is cheap to inspect. A
  // snapshot taken while the engine runs.
  void CountOccupancy(Occupancy* out) const;
  // Teardown (no executor runs): blocks new reservations, waits for reservations under way to
  // commit, calls fn(ring index) for every slot in [tail, reserve) of each partition, then
  // leaves every partition empty (claim = tail = reserve) and gives those slots back to their
  // tenants' shares. fn must leave each slot EMPTY and must not move a tail (each partition's
  // tail lock is held while fn runs on its slots).
  void SweepInFlight(absl::FunctionRef<void(uint32_t)> fn);

  // ---- The reference design's ports (ring_ports.h) ----
  absl::Status Publish(uint32_t slot_index, absl::Span<const char> image) override;
  absl::string_view name() const override { return "mk.partitioned-host-ring"; }
  absl::Status ReadSlot(uint32_t slot_index, absl::Span<char> image) const override;
  absl::StatusOr<uint64_t> DoneCount() const override;

 private:
  struct alignas(64) Partition {
    uint32_t Advance(uint32_t index, uint32_t distance) const {
      const uint32_t next = index + distance;
      return next >= first + size ? next - size : next;
    }
    uint32_t first = 0;
    uint32_t size = 0;
    uint64_t reserve = 0;  // guarded by reserve_mu_
    // The tail as last read (guarded by reserve_mu_): it only grows, so a reservation that fits
    // below it fits, and the tail's line (written by every reap) is read only when it does not.
    uint64_t tail_seen = 0;
    alignas(64) std::atomic<uint64_t> frontier{0};
    alignas(64) std::atomic<uint64_t> claim{0};
    alignas(64) std::atomic<uint64_t> tail{0};
    std::mutex tail_mu;  // one thread advances the tail at a time
  };

  PartitionedRing(uint32_t* words, uint32_t slot_count,
                  const std::array<uint32_t, protocol::kPriorityCount>& weights);
  // Waits until every sequence of `part` before `sequence` is committed.
  static void WaitForFrontier(const Partition& part, uint64_t sequence);
  // Gives the slots [begin, end) of `partition` (EMPTY, not yet reusable) back to their
  // tenants' shares, one Release per run of one tenant.
  void ReleaseShares(uint32_t partition, uint64_t begin, uint64_t end) const;
  absl::Status CheckIndex(uint32_t slot_index) const;

  const base::PagePtr<uint32_t[]> words_;  // page-aligned
  const uint32_t slot_count_;
  std::unique_ptr<SlotMeta[]> meta_;
  std::array<Partition, protocol::kPriorityCount> partitions_;
  mutable std::mutex reserve_mu_;   // guards every partition's reserve and tail_seen
  std::mutex port_publish_mu_;      // serializes the producer port's Publish calls
  TenantShares* shares_ = nullptr;  // not owned; set before publishing starts
};

template <typename Fn>
void PartitionedRing::ForEachIndex(const ClaimRange& range, Fn&& fn) const {
  const Partition& part = partitions_[range.partition];
  uint32_t index = IndexOf(range.partition, range.begin);
  // Callers claim or reap each slot (a compare-and-swap on a line the publisher's or the
  // executor's core wrote last): fetching the slots ahead with write intent overlaps those
  // transfers instead of serializing one per slot.
  constexpr uint32_t kAhead = 16;
  uint32_t ahead = part.size > kAhead ? part.Advance(index, kAhead) : index;
  for (uint64_t seq = range.begin; seq < range.end; ++seq) {
    if (seq + kAhead < range.end) {
      PrefetchForWrite(slot(ahead));
      ahead = part.Advance(ahead, 1);
    }
    fn(index);
    index = part.Advance(index, 1);
  }
}

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_PARTITIONED_RING_H_
