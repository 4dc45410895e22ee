// SlotReaper: turns slots that left execution into completions and their room back into EMPTY
// slots (docs/protocol.md, "Ring slot"): reaping (DONE | FAULT -> completion -> EMPTY), host
// cancellation (PUBLISHED | YIELD | REQUEUE -> EMPTY, completing CANCELLED), resuming slots
// parked in WAIT_IO when their io finishes, and the teardown sweep that fails whatever was in
// flight with FAULT(ENGINE_RESTART). Each of these moves a slot with a compare-and-swap, so
// exactly one thread delivers each completion even when two threads scan the same slot.
//
// Fences: a slot that leaves the ring tells the BATCH_FENCE waiting on it; a fence released
// here goes to the fence-ready callback (the ClaimScheduler's ready list). Executors release
// the fences of the slots they finish themselves (they know when they did).
//
// Thread safety: every method may be called from any thread. ResumeWaiting and FailInFlight
// are serialized, so a resumed slot is never failed as well.
#ifndef MK_ENGINE_SRC_HOST_SLOT_REAPER_H_
#define MK_ENGINE_SRC_HOST_SLOT_REAPER_H_

#include <cstdint>
#include <functional>
#include <mutex>

#include "absl/types/span.h"
#include "host/completion_batcher.h"
#include "host/control_buffers.h"
#include "host/outcome_ledger.h"
#include "host/partitioned_ring.h"

namespace mk::engine::host {

class SlotReaper {
 public:
  // Completions of slots published without a sink go to `default_sink`. Every argument must
  // outlive the reaper.
  SlotReaper(PartitionedRing& ring, ControlBuffers& control, OutcomeLedger& ledger,
             CompletionSink& default_sink);

  // Where a fence released by cancellation, io completion or teardown goes.
  void SetFenceReadyCallback(std::function<void(uint32_t)> callback) {
    on_fence_ready_ = std::move(callback);
  }
  // A batcher delivering to this reaper's default sink and counting into its ledger.
  CompletionBatcher NewBatcher() { return CompletionBatcher(ledger_, default_sink_); }

  // Reaps every terminal slot of the range (or the one slot, or the given slots) and advances
  // the tails of the partitions involved. ReapRange and ReapIndices deliver what they reaped
  // (flush `out`) before they advance a tail: waiters hear first, the ring's room follows.
  void ReapRange(const ClaimRange& range, CompletionBatcher* out);
  void ReapSlot(uint32_t index, CompletionBatcher* out);
  void ReapIndices(absl::Span<const uint32_t> indices, CompletionBatcher* out);

  // Cancels one slot no executor has claimed; true when this call did (its CANCELLED
  // completion is added to `out`).
  bool CancelSlot(uint32_t index, CompletionBatcher* out);
  // Cancels the given tickets of `tenant` wherever they sit unclaimed; returns how many.
  uint32_t CancelTickets(uint32_t tenant, absl::Span<const uint64_t> tickets,
                         CompletionBatcher* out);

  // An io completion resumes a slot parked in WAIT_IO: writes the outcome (DONE or FAULT),
  // counts it in DONE_COUNT, releases its fence and reaps it. False when the slot no longer
  // waits under `ticket` (a teardown failed it meanwhile).
  bool ResumeWaiting(uint32_t index, uint64_t ticket, const protocol::ExecResult& result,
                     CompletionBatcher* out);
  // With the executor stopped: every slot not yet terminal becomes FAULT(ENGINE_RESTART), its
  // ARG1 the status it had, and everything is reaped.
  void FailInFlight(CompletionBatcher* out);

 private:
  // Delivers a terminal slot's completion if this thread wins the terminal -> EMPTY move.
  bool ReapIfTerminal(uint32_t index, CompletionBatcher* out);
  void OnFenceReleased(uint32_t fence) {
    if (ring_.ReleaseFence(fence) && on_fence_ready_) on_fence_ready_(fence);
  }

  PartitionedRing& ring_;
  ControlBuffers& control_;
  OutcomeLedger& ledger_;
  CompletionSink& default_sink_;
  std::function<void(uint32_t)> on_fence_ready_;
  std::mutex resume_mu_;  // ResumeWaiting vs FailInFlight
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_SLOT_REAPER_H_
