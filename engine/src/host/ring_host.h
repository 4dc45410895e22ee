// RingHost: the host side of an engine that no executor changes: the ring and control buffers,
// priority partitions, tickets, the publish path, claim cursors, reaping (terminal slots ->
// completions -> EMPTY), cancellation, and the teardown sweep that fails what was in flight.
//
// Ring layout: the ring's slots are split into five contiguous partitions, one per priority
// (control words 129..134 hold their first slot and the end). Each partition is a FIFO over
// 64-bit sequence numbers with four cursors:
//   tail <= claim <= frontier <= reserve
// - reserve: next sequence to reserve. Under `publish_mu_` Publish checks capacity against
//   `tail`, takes its tickets and reserves its sequences; it writes the slots without the lock
//   (producers write in parallel) and then commits them: it waits until `frontier` reaches its
//   first sequence (every earlier reservation committed) and moves it past its last (release),
//   so executors only ever see whole batches, in reservation order.
// - claim: next sequence an executor may take; ClaimBatch advances it with a CAS, a single-owner
//   claim of a contiguous range. The executor then moves each slot PUBLISHED -> CLAIMED with a
//   CAS (which loses to a concurrent Cancel).
// - tail: everything before it is EMPTY and reusable. AdvanceTail walks EMPTY slots in
//   [tail, claim); a slot that stays PUBLISHED (disabled tenant) or REQUEUE (waiting fence)
//   holds it.
//
// Reaping moves a terminal slot to EMPTY with a CAS, so exactly one thread delivers each
// completion even when two threads scan the same slot.
//
// Thread safety: all methods are safe to call concurrently. Buffers are owned here and live as
// long as the RingHost. The telemetry side (occupancy, totals, stats) is in ring_host_stats.cc.
#ifndef MK_ENGINE_SRC_HOST_RING_HOST_H_
#define MK_ENGINE_SRC_HOST_RING_HOST_H_

#include <array>
#include <cstdlib>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "host/completion_store.h"
#include "host/deadline_timer.h"
#include "host/prefetch.h"
#include "mk/engine/control_buffer.h"
#include "mk/engine/engine.h"
#include "mk/engine/engine_stats.h"
#include "mk/engine/host_ring.h"
#include "mk/engine/interpreter.h"
#include "mk/engine/telemetry.h"

namespace mk::engine::host {

inline constexpr uint32_t kNoFence = UINT32_MAX;

// A ring slot's STATUS word, for atomic access by the host's threads.
inline std::atomic_ref<uint32_t> StatusWord(uint32_t* slot) {
  return std::atomic_ref<uint32_t>(slot[protocol::kWordStatus]);
}

// Host-side bookkeeping of one ring slot, written by Publish before the frontier moves.
struct SlotMeta {
  std::atomic<uint64_t> ticket{0};
  uint64_t publish_ns = 0;  // steady-clock time of the Publish call; 0 when not collected
  CompletionSink* sink = nullptr;  // nullptr: the engine's CompletionStore
  uint32_t fence_waiter = kNoFence;  // ring index of the BATCH_FENCE waiting on this slot
  std::atomic<uint32_t> fence_pending{0};  // for a fence: predecessors not yet terminal
};

// Collects completions during a reap pass and delivers them in runs that share a sink.
// Counts outcomes locally and adds them to the RingHost's totals after delivering, so the
// totals never run ahead of delivered completions and workers do not contend per slot.
class RingHost;
class CompletionBatcher {
 public:
  explicit CompletionBatcher(RingHost* host);
  CompletionBatcher(const CompletionBatcher&) = delete;
  CompletionBatcher& operator=(const CompletionBatcher&) = delete;
  ~CompletionBatcher() { Flush(); }
  // `publish_ns` (0 = unknown) feeds the publish-to-completion latency histogram.
  void Add(CompletionSink* sink, const Completion& c, uint64_t publish_ns);
  void Flush();

 private:
  void Deliver();
  void FlushTenantCounts();
  RingHost* host_;
  CompletionSink* current_ = nullptr;
  std::vector<Completion> batch_;
  uint64_t done_ = 0, faulted_ = 0, cancelled_ = 0;
  // Outcome counts of the tenant seen last, by opcode class (flushed when the tenant changes).
  uint32_t counts_tenant_ = UINT32_MAX;
  std::array<std::array<uint64_t, kOutcomeCount>, kOpcodeClassCount> counts_{};
  LatencyHistogram latency_;
  LatencyRecorder latency_recorder_{&latency_};
  // Publish times of the completions added since the last Flush: recorded there, after the
  // completions were delivered, so reading the clock is not on their way out.
  std::vector<uint64_t> publish_times_;
};

// Monotonic nanoseconds for the latency histograms.
uint64_t NowNs();

struct ClaimRange {
  uint32_t partition = 0;
  uint64_t begin = 0;
  uint64_t end = 0;
};

class RingHost {
 public:
  static absl::StatusOr<std::unique_ptr<RingHost>> Create(const EngineOptions& options);

  const RingView& ring() const { return ring_->view(); }
  const ControlView& control() const { return control_; }
  // Whether `tenant` (< max_tenants) is enabled. A copy of the control buffer's mask word kept
  // on lines of its own: the mask shares a cache line with DONE_COUNT, which every reap pass
  // adds to, and the publish and claim paths read it for every slot. Change it only through
  // SetTenantEnabled, which writes both.
  bool TenantEnabled(uint32_t tenant) const {
    return TenantFlag(tenant).load(std::memory_order_acquire) != 0;
  }
  absl::Status SetTenantEnabled(uint32_t tenant, bool enabled);
  protocol::ExecContext MakeExecContext();
  CompletionStore& store() { return store_; }
  absl::Span<const uint32_t> debug_log() const { return {debug_log_.get(), debug_log_words_}; }
  // The debug log's storage: whole pages, so an executor may register it with a device.
  absl::Span<uint32_t> debug_log_storage() { return {debug_log_.get(), debug_log_words_}; }
  SlotMeta& meta(uint32_t index) { return meta_[index]; }

  // Publish (validated by the caller). Fails RESOURCE_EXHAUSTED when a partition is full.
  absl::StatusOr<PublishResult> Publish(uint32_t tenant, absl::Span<const SlotPayload> slots,
                                        CompletionSink* sink);
  uint64_t IssuedTickets(uint32_t tenant) const;
  // INVALID_ARGUMENT naming the first ticket `tenant` was never issued.
  absl::Status CheckTicketsIssued(uint32_t tenant, absl::Span<const uint64_t> tickets) const;
  // Engine::WaitForAsync on the store, with expiry through the timer.
  void WaitForAsync(uint32_t tenant, absl::Span<const uint64_t> tickets, absl::Time deadline,
                    CompletionStore::Callback done);

  // Executor side.
  bool HasClaimable(uint32_t partition) const;
  bool HasAnyClaimable() const;
  bool ClaimBatch(uint32_t partition, uint32_t max, ClaimRange* out);
  uint32_t IndexOf(uint32_t partition, uint64_t sequence) const;
  // Calls fn(ring index) for each sequence of the range, in order, without a division per slot.
  template <typename Fn>
  void ForEachIndex(const ClaimRange& range, Fn&& fn) const {
    const Partition& part = partitions_[range.partition];
    uint32_t index = IndexOf(range.partition, range.begin);
    // Callers claim or reap each slot (a compare-and-swap on a line the publisher's or the
    // executor's core wrote last): fetching the slots ahead with write intent overlaps those
    // transfers instead of serializing one per slot.
    constexpr uint32_t kAhead = 16;
    uint32_t ahead = part.size > kAhead ? part.Advance(index, kAhead) : index;
    for (uint64_t seq = range.begin; seq < range.end; ++seq) {
      if (seq + kAhead < range.end) {
        PrefetchForWrite(ring().slot(ahead));
        ahead = part.Advance(ahead, 1);
      }
      fn(index);
      index = part.Advance(index, 1);
    }
  }
  uint32_t PartitionOf(uint32_t index) const;

  // A slot of a batch reached a terminal state (or was cancelled): tells its fence. Returns
  // true when that fence has no predecessors left and may run.
  // Read the predecessor's meta().fence_waiter before its slot can be reaped.
  bool ReleaseFence(uint32_t fence_index);
  // Called with a fence whose predecessors became terminal through cancellation or teardown
  // (the executor's own completions use ReleaseFence's return value).
  void SetFenceReadyCallback(std::function<void(uint32_t)> callback) {
    on_fence_ready_ = std::move(callback);
  }

  // Reaps every terminal slot of the range (or the one slot) and advances the tail. ReapRange
  // and ReapIndices deliver what they reaped (flush `out`) before they advance a tail: waiters
  // hear first, the ring's capacity follows.
  void ReapRange(const ClaimRange& range, CompletionBatcher* out);
  void ReapSlot(uint32_t index, CompletionBatcher* out);
  // Reaps the given slots (each must be terminal or already reaped) and advances the tails of
  // the partitions they belong to, once each.
  void ReapIndices(absl::Span<const uint32_t> indices, CompletionBatcher* out);
  void AdvanceTail(uint32_t partition);

  // Host cancellation of one slot: claimable -> EMPTY. True when this call cancelled it (the
  // CANCELLED completion is added to `out`).
  bool CancelSlot(uint32_t index, CompletionBatcher* out);
  // Cancels the given tickets of `tenant` wherever they sit unclaimed; returns how many.
  uint32_t CancelTickets(uint32_t tenant, absl::Span<const uint64_t> tickets,
                         CompletionBatcher* out);
  // With the executor stopped: every slot not yet terminal becomes FAULT(ENGINE_RESTART), and
  // everything is reaped.
  void FailInFlight(CompletionBatcher* out);
  // CLAIMED -> WAIT_IO for a slot whose io request is about to become visible (the loader does
  // this before publishing, so a fast completion always finds the slot waiting).
  void MarkWaiting(uint32_t index) {
    uint32_t expected = static_cast<uint32_t>(protocol::SlotStatus::kClaimed);
    StatusWord(ring().slot(index))
        .compare_exchange_strong(expected, static_cast<uint32_t>(protocol::SlotStatus::kWaitIo),
                                 std::memory_order_acq_rel);
  }
  // An io completion resumes a slot parked in WAIT_IO: writes the outcome (DONE or FAULT),
  // releases its fence and reaps it. False when the slot no longer waits under `ticket` (a
  // teardown failed it meanwhile). Serialized with FailInFlight.
  bool ResumeWaiting(uint32_t index, uint64_t ticket, const protocol::ExecResult& result,
                     CompletionBatcher* out);

  void AddOutcomes(uint64_t done, uint64_t faulted, uint64_t cancelled);
  void AddOutcomeCounts(uint32_t tenant,
                        const std::array<std::array<uint64_t, kOutcomeCount>, kOpcodeClassCount>& c);
  void RecordLatency(const LatencyHistogram& h) { latency_.Merge(h); }
  void RecordQueueWait(const LatencyHistogram& h) { queue_wait_.Merge(h); }
  bool collect_latency() const { return collect_latency_; }
  // Fills everything but `restarts`.
  void Stats(EngineStats* out) const;
  EngineCounters counters() const;
  // Occupancy from the in-flight windows only: every slot outside [tail, reserve) of its
  // partition is EMPTY by construction, so a lightly loaded ring is cheap to inspect. A
  // snapshot taken while the engine runs, like DecodeOccupancy.
  void CountOccupancy(Occupancy* out);
  uint64_t in_flight() const;
  uint32_t slot_count() const { return ring().slot_count(); }

 private:
  struct alignas(64) Partition {
    // The ring index `distance` (< size) sequences after ring index `index` of this partition.
    uint32_t Advance(uint32_t index, uint32_t distance) const {
      const uint32_t next = index + distance;
      return next >= first + size ? next - size : next;
    }
    uint32_t first = 0;
    uint32_t size = 0;
    uint64_t reserve = 0;  // guarded by publish_mu_
    // The tail as last read (guarded by publish_mu_): it only grows, so a reservation that fits
    // below it fits, and the tail's line (written by every reap) is read only when it does not.
    uint64_t tail_seen = 0;
    alignas(64) std::atomic<uint64_t> frontier{0};
    alignas(64) std::atomic<uint64_t> claim{0};
    alignas(64) std::atomic<uint64_t> tail{0};
    std::mutex tail_mu;  // one thread advances the tail at a time
  };

  RingHost(std::unique_ptr<HostRing> ring, std::vector<uint32_t> control_words,
           const EngineOptions& options);
  // Waits until every sequence of `part` before `sequence` is committed.
  static void WaitForFrontier(const Partition& part, uint64_t sequence);
  // Copies a terminal slot into a completion and delivers it if this thread wins the
  // terminal -> EMPTY CAS.
  bool ReapIfTerminal(uint32_t index, CompletionBatcher* out);

  std::unique_ptr<HostRing> ring_;
  std::vector<uint32_t> control_words_;
  ControlView control_;
  struct FreeDeleter {
    void operator()(uint32_t* p) const { std::free(p); }
  };
  size_t debug_log_words_;
  std::unique_ptr<uint32_t[], FreeDeleter> debug_log_;  // page-aligned, zeroed
  uint32_t debug_log_records_;
  std::unique_ptr<SlotMeta[]> meta_;
  std::array<Partition, protocol::kPriorityCount> partitions_;
  std::unique_ptr<std::atomic<uint64_t>[]> next_ticket_;  // per tenant; written under publish_mu_
  struct alignas(64) TenantLine {
    std::atomic<uint8_t> enabled[64];
  };
  std::unique_ptr<TenantLine[]> tenant_enabled_;  // see TenantEnabled
  std::atomic<uint8_t>& TenantFlag(uint32_t tenant) const {
    return tenant_enabled_[tenant / 64].enabled[tenant % 64];
  }
  std::mutex publish_mu_;
  std::mutex resume_mu_;  // ResumeWaiting vs FailInFlight
  CompletionStore store_;
  DeadlineTimer timer_;  // declared after store_: stopped before the store goes away
  uint64_t max_stored_completions_;
  std::function<void(uint32_t)> on_fence_ready_;

  const bool collect_latency_;
  const uint32_t max_tenants_;
  // [tenant][class][outcome] flattened; relaxed atomics, added in aggregated steps.
  std::unique_ptr<std::atomic<uint64_t>[]> outcome_counts_;
  SharedLatencyHistogram latency_;
  SharedLatencyHistogram queue_wait_;

  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> done_{0};
  std::atomic<uint64_t> faulted_{0};
  std::atomic<uint64_t> cancelled_{0};
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_RING_HOST_H_
