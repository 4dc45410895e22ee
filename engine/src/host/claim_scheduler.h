// ClaimScheduler: the executor-independent half of claiming, shared by the CPU engine (whose
// worker threads run what they claim) and the CUDA engine (whose host side claims and hands the
// slots to the persistent kernel):
// - which partition to claim from next: priority order with the starvation guard (control word
//   135: after 16 consecutive CRITICAL/HIGH claims the lower classes go first once);
// - the per-slot claim: a slot whose tenant is disabled stays PUBLISHED and is parked until the
//   tenant is enabled (or cancelled by Drain); a BATCH_FENCE whose predecessors are not terminal
//   moves to REQUEUE and becomes ready when the last one finishes;
// - the ready list (fences released, tenants enabled, requeued slots) and the parked lists.
//
// Thread safety: every method may be called from any thread. The lists are guarded by `mu_`;
// `wake` (called when slots become ready) runs without the lock held.
#ifndef MK_ENGINE_SRC_HOST_CLAIM_SCHEDULER_H_
#define MK_ENGINE_SRC_HOST_CLAIM_SCHEDULER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "host/completion_batcher.h"
#include "host/control_buffers.h"
#include "host/partitioned_ring.h"
#include "host/slot_reaper.h"
#include "host/tenant_gate.h"
#include "mk/engine/protocol.h"

namespace mk::engine::host {

// Control-buffer counters an executor aggregates locally and adds once per claimed batch, so
// the hot path has no shared-counter contention. Bit masks say which entries are not zero, so
// a flush after one slot touches one entry of each array instead of scanning them all.
class ControlCounters {
 public:
  // A slot reached DONE or FAULT.
  void CountOutcome(uint32_t opcode) {
    ++done_count_;
    if (opcode < opcode_runs_.size()) Bump(opcode_runs_, opcode_dirty_, opcode);
  }
  // A slot of `tenant` at `priority` was claimed.
  void CountClaim(uint32_t tenant, uint32_t priority) {
    Bump(tenant_claims_, tenant_dirty_, tenant % protocol::control::kTenantFairnessCount);
    Bump(priority_claims_, priority_dirty_, priority);
  }
  // Adds everything to the control buffer and resets.
  void Flush(uint32_t* control);

 private:
  template <size_t N>
  static void Bump(std::array<uint32_t, N>& counts, uint32_t& dirty, uint32_t i) {
    static_assert(N <= 32, "one bit per entry");
    ++counts[i];
    dirty |= 1u << i;
  }
  // Adds the entries `dirty` names to control[first + i] and clears them.
  template <size_t N>
  static void FlushArray(std::array<uint32_t, N>& counts, uint32_t& dirty, uint32_t* control,
                         uint32_t first);

  uint32_t done_count_ = 0;
  std::array<uint32_t, protocol::control::kOpcodeMetricsCount> opcode_runs_{};
  std::array<uint32_t, protocol::control::kTenantFairnessCount> tenant_claims_{};
  std::array<uint32_t, protocol::kPriorityCount> priority_claims_{};
  uint32_t opcode_dirty_ = 0, tenant_dirty_ = 0, priority_dirty_ = 0;
};

class ClaimScheduler {
 public:
  // `wake` tells the executor that ready slots are waiting. Registers itself as the reaper's
  // fence-ready callback. Every reference must outlive the scheduler.
  ClaimScheduler(PartitionedRing& ring, ControlBuffers& control, const TenantGate& tenants,
                 SlotReaper& reaper, std::function<void()> wake);
  ClaimScheduler(const ClaimScheduler&) = delete;
  ClaimScheduler& operator=(const ClaimScheduler&) = delete;

  // Claims up to `max` published sequences from the highest-priority non-empty partition.
  bool ClaimNext(uint32_t max, ClaimRange* range);
  // Takes ring slot `index` for execution: true when the caller now owns it CLAIMED and must
  // run it. False when it was cancelled meanwhile, parked (tenant disabled), cancelled because
  // the engine drains, or set aside as a fence still waiting for its predecessors.
  bool TryClaim(uint32_t index, ControlCounters& counters, CompletionBatcher& batcher);

  // A slot that must be claimed again later (fence released, REQUEUE).
  void PushReady(uint32_t index);
  bool has_ready() const { return ready_count_.load(std::memory_order_acquire) != 0; }
  // Swaps the ready list into `out`; false when it was empty.
  bool TakeReady(std::vector<uint32_t>* out);
  // The tenant was enabled: its parked slots become ready.
  void OnTenantEnabled(uint32_t tenant);
  // From now on slots of disabled tenants are cancelled instead of parked; the parked ones are
  // cancelled now (docs/protocol.md: tenant disabled -> CANCELLED).
  void BeginDrain(CompletionBatcher* batcher);
  // Drops `tenant`'s parked entries whose slots were cancelled meanwhile (their ring slots may
  // already hold another tenant's work, which must never be run or cancelled through them).
  void ForgetCancelledParked(uint32_t tenant);
  // Forgets both lists (teardown: the ring host fails whatever they named).
  void Clear();
  uint64_t parked_count() const { return parked_count_.load(std::memory_order_acquire); }

 private:
  void Park(uint32_t tenant, uint32_t index, CompletionBatcher& batcher);
  // A parked slot, named by its index and the ticket it held when parked: the entry is stale
  // once the slot was cancelled (and perhaps reused).
  struct ParkedSlot {
    uint32_t index;
    uint64_t ticket;
  };
  bool StillParked(const ParkedSlot& p) const;

  PartitionedRing& ring_;
  uint32_t* const starvation_;  // control word 135
  const TenantGate& tenants_;
  SlotReaper& reaper_;
  const std::function<void()> wake_;
  // std::mutex, not absl::Mutex: see completion_store.h (ThreadSanitizer).
  mutable std::mutex mu_;
  std::vector<uint32_t> ready_;                                    // guarded by mu_
  absl::flat_hash_map<uint32_t, std::vector<ParkedSlot>> parked_;  // guarded by mu_
  bool draining_ = false;                                          // guarded by mu_
  std::atomic<uint32_t> ready_count_{0};
  std::atomic<uint64_t> parked_count_{0};
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_CLAIM_SCHEDULER_H_
