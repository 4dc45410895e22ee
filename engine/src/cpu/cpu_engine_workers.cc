// The CPU engine's executor: worker threads that claim, run and reap batches, the deferred
// (ready / parked) lists, and idle parking. See cpu_engine.h for the threading model.
#include <chrono>

#include "cpu/cpu_engine.h"
#include "mk/base/cpu_relax.h"
#include "mk/engine/opcode_registry.h"

namespace mk::engine::cpu {

// Per-worker state: the interpreter context, a completion batcher, and control counters that
// are added to the control buffer once per claimed batch instead of once per slot.
struct CpuEngine::WorkerState {
  WorkerState(host::ControlBuffers& control, host::SlotReaper& reaper)
      : ctx(control.MakeExecContext()), batcher(reaper.NewBatcher()) {}

  void FlushCounters() { counters.Flush(ctx.control); }

  protocol::ExecContext ctx;
  host::CompletionBatcher batcher;
  host::ControlCounters counters;
  LatencyHistogram queue_wait;
  std::vector<uint32_t> ready;  // indices taken from the scheduler's ready list
};

void CpuEngine::WorkerLoop() {
  WorkerState ws(*control_, reaper_);
  if (loader_ != nullptr) ws.ctx.io = loader_->Hook();
  ws.ctx.buffers = buffers_.descriptors();
  ws.ctx.buffer_count = buffers_.capacity();
  const auto spin_before_park = absl::ToChronoNanoseconds(options_.idle_spin);
  auto idle_since = std::chrono::steady_clock::now();
  uint32_t idle_spins = 0;
  while (!stop_.load(std::memory_order_acquire) && !control_->control().shutdown_requested()) {
    if (paused_.load(std::memory_order_acquire)) {  // test-only stall: claim nothing
      quiescent_workers_.fetch_add(1, std::memory_order_seq_cst);
      quiescent_workers_.notify_all();
      wake_.Sleep([this] {
        return !paused_.load(std::memory_order_seq_cst) || stop_.load(std::memory_order_seq_cst);
      });
      quiescent_workers_.fetch_sub(1, std::memory_order_seq_cst);
      continue;
    }
    bool worked = false;
    if (scheduler_.has_ready()) worked = ProcessReady(ws);
    host::ClaimRange range;
    if (scheduler_.ClaimNext(options_.claim_batch, &range)) {
      ProcessClaim(range, ws);
      worked = true;
    }
    if (worked) {
      if (idle_spins != 0) spinners_.fetch_sub(1, std::memory_order_seq_cst);
      idle_spins = 0;
      continue;
    }
    if (idle_spins++ == 0) {
      idle_since = std::chrono::steady_clock::now();
      spinners_.fetch_add(1, std::memory_order_seq_cst);
    }
    if ((idle_spins & 63) != 0 ||
        std::chrono::steady_clock::now() - idle_since < spin_before_park) {
      base::CpuRelax();
      continue;
    }
    IdleWait(/*was_spinning=*/true);
    idle_spins = 0;
  }
  if (idle_spins != 0) spinners_.fetch_sub(1, std::memory_order_seq_cst);
  quiescent_workers_.fetch_add(1, std::memory_order_seq_cst);  // never claims again
  quiescent_workers_.notify_all();
}

void CpuEngine::ProcessClaim(const host::ClaimRange& range, WorkerState& ws) {
  const bool timed = ledger_.collect_latency();
  LatencyRecorder queue_wait(&ws.queue_wait);
  if (timed) queue_wait.SetNow(host::NowNs());
  ring_->ForEachIndex(range, [&](uint32_t index) {
    // publish_ns is read after the claim: RunClaimed has the meta line in cache by then, and a
    // read before the claim's compare-and-swap (a full barrier) would stall on it.
    if (TryRun(index, ws) && timed) {
      const uint64_t publish_ns = ring_->meta(index).publish_ns;
      if (publish_ns != 0) queue_wait.Record(publish_ns);
    }
  });
  ws.FlushCounters();
  if (!ws.queue_wait.empty()) {
    ledger_.RecordQueueWait(ws.queue_wait);
    ws.queue_wait.Clear();
  }
  reaper_.ReapRange(range, &ws.batcher);  // delivers (flushes the batcher)
  NotifyProgress();
}

bool CpuEngine::ProcessReady(WorkerState& ws) {
  if (!scheduler_.TakeReady(&ws.ready)) return false;
  for (uint32_t index : ws.ready) TryRun(index, ws);
  ws.FlushCounters();
  reaper_.ReapIndices(ws.ready, &ws.batcher);  // delivers (flushes the batcher)
  ws.ready.clear();
  NotifyProgress();
  return true;
}

bool CpuEngine::TryRun(uint32_t index, WorkerState& ws) {
  if (!scheduler_.TryClaim(index, ws.counters, ws.batcher)) return false;
  RunClaimed(index, ws);
  return true;
}

void CpuEngine::RunClaimed(uint32_t index, WorkerState& ws) {
  const uint32_t* slot = ring_->slot(index);
  // Read while the slot is CLAIMED (once finished, another thread may reap and reuse it).
  const bool long_running = protocol::IsMemoryOpcode(slot[protocol::kWordOpcode]);
  FinishClaimed(index, protocol::Execute<protocol::ProductOpcodes>(slot, index, ws.ctx),
                ws.counters);
  // A memory opcode may take a millisecond: its progress shows at once (DONE_COUNT, which the
  // watchdog reads) rather than at the end of a claim of up to claim_batch such slots.
  if (long_running) ws.FlushCounters();
}

void CpuEngine::IdleWait(bool was_spinning) {
  // Counted as a sleeper before it stops counting as a spinner, so a publisher that skips the
  // wake-up because it saw a spinner is always followed by this thread's re-check.
  wake_.Sleep(
      [this] {
        // paused_: a pause must reach parked workers too (PauseExecutor waits for them).
        return stop_.load(std::memory_order_seq_cst) || paused_.load(std::memory_order_seq_cst) ||
               ring_->HasAnyClaimable() || scheduler_.has_ready();
      },
      [&] {
        if (was_spinning) spinners_.fetch_sub(1, std::memory_order_seq_cst);
      });
}

void CpuEngine::WakeWorkers(bool all) {
  wake_.Bump();
  // A spinning worker will find a single batch by itself: no system call on the publish path.
  if (!all && spinners_.load(std::memory_order_seq_cst) != 0) return;
  wake_.NotifySleepers(all);
}

}  // namespace mk::engine::cpu
