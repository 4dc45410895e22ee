// The CPU engine's executor: worker threads that claim, run and reap batches, the deferred
// (ready / parked) lists, and idle parking. See cpu_engine.h for the threading model.
#include <algorithm>
#include <array>
#include <chrono>

#include "engine/src/cpu/cpu_engine.h"
#include "mk/engine/atomics.h"
#include "mk/engine/opcode_registry.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace mk::engine::cpu {

namespace ctl = protocol::control;
using protocol::SlotStatus;

namespace {

constexpr uint32_t kHighPriorityClasses = 2;  // CRITICAL and HIGH

void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

std::atomic_ref<uint32_t> StatusWord(uint32_t* slot) {
  return std::atomic_ref<uint32_t>(slot[protocol::kWordStatus]);
}

}  // namespace

// Per-worker state: the interpreter context, a completion batcher, and counters that are
// added to the control buffer once per claimed batch instead of once per slot.
struct CpuEngine::WorkerState {
  explicit WorkerState(host::RingHost* host) : ctx(host->MakeExecContext()), batcher(host) {}

  void FlushCounters() {
    uint32_t* control = ctx.control;
    if (done_count != 0) protocol::AtomicFetchAdd(&control[ctl::kDoneCount], done_count);
    for (uint32_t i = 0; i < opcode_runs.size(); ++i) {
      if (opcode_runs[i] != 0) {
        protocol::AtomicFetchAdd(&control[ctl::kOpcodeMetricsFirst + i], opcode_runs[i]);
      }
    }
    for (uint32_t i = 0; i < tenant_claims.size(); ++i) {
      if (tenant_claims[i] != 0) {
        protocol::AtomicFetchAdd(&control[ctl::kTenantFairnessFirst + i], tenant_claims[i]);
      }
    }
    for (uint32_t i = 0; i < priority_claims.size(); ++i) {
      if (priority_claims[i] != 0) {
        protocol::AtomicFetchAdd(&control[ctl::kPriorityFairnessFirst + i], priority_claims[i]);
      }
    }
    done_count = 0;
    opcode_runs.fill(0);
    tenant_claims.fill(0);
    priority_claims.fill(0);
  }

  protocol::ExecContext ctx;
  host::CompletionBatcher batcher;
  uint32_t done_count = 0;
  std::array<uint32_t, ctl::kOpcodeMetricsCount> opcode_runs{};
  std::array<uint32_t, ctl::kTenantFairnessCount> tenant_claims{};
  std::array<uint32_t, protocol::kPriorityCount> priority_claims{};
  LatencyHistogram queue_wait;
  std::vector<uint32_t> ready;  // indices taken from the engine's ready list
};


void CpuEngine::WorkerLoop() {
  WorkerState ws(host_.get());
  if (loader_ != nullptr) ws.ctx.io = loader_->Hook();
  const auto spin_before_park = absl::ToChronoNanoseconds(options_.idle_spin);
  auto idle_since = std::chrono::steady_clock::now();
  uint32_t idle_spins = 0;
  while (!stop_.load(std::memory_order_acquire) && !host_->control().shutdown_requested()) {
    if (paused_.load(std::memory_order_acquire)) {  // test-only stall: claim nothing
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      const uint32_t epoch = work_epoch_.load(std::memory_order_seq_cst);
      if (paused_.load(std::memory_order_seq_cst) && !stop_.load(std::memory_order_seq_cst)) {
        work_epoch_.wait(epoch, std::memory_order_seq_cst);
      }
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      continue;
    }
    bool worked = false;
    if (ready_count_.load(std::memory_order_acquire) != 0) worked = ProcessReady(ws);
    host::ClaimRange range;
    if (ClaimNext(&range)) {
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
    if ((idle_spins & 63) != 0 || std::chrono::steady_clock::now() - idle_since < spin_before_park) {
      CpuRelax();
      continue;
    }
    IdleWait(/*was_spinning=*/true);
    idle_spins = 0;
  }
  if (idle_spins != 0) spinners_.fetch_sub(1, std::memory_order_seq_cst);
}

bool CpuEngine::ClaimNext(host::ClaimRange* range) {
  uint32_t* starvation = &host_->control().words()[ctl::kStarvationCounter];
  // After kStarvationLimit consecutive CRITICAL/HIGH claims, look at the lower classes first.
  const bool prefer_lower = protocol::AtomicLoad(starvation) >= ctl::kStarvationLimit;
  static constexpr uint32_t kNormalOrder[] = {0, 1, 2, 3, 4};
  static constexpr uint32_t kStarvedOrder[] = {2, 3, 4, 0, 1};
  for (uint32_t p : prefer_lower ? kStarvedOrder : kNormalOrder) {
    if (!host_->HasClaimable(p) || !host_->ClaimBatch(p, options_.claim_batch, range)) continue;
    if (p < kHighPriorityClasses) {
      protocol::AtomicFetchAdd(starvation, 1);
    } else if (protocol::AtomicLoad(starvation) != 0) {
      protocol::AtomicStore(starvation, 0);
    }
    return true;
  }
  return false;
}

void CpuEngine::ProcessClaim(const host::ClaimRange& range, WorkerState& ws) {
  const bool timed = host_->collect_latency();
  LatencyRecorder queue_wait(&ws.queue_wait);
  if (timed) queue_wait.SetNow(host::NowNs());
  host_->ForEachIndex(range, [&](uint32_t index) {
    // publish_ns is read after the claim: RunClaimed has the meta line in cache by then, and a
    // read before the claim's compare-and-swap (a full barrier) would stall on it.
    if (TryRun(index, ws) && timed) {
      const uint64_t publish_ns = host_->meta(index).publish_ns;
      if (publish_ns != 0) queue_wait.Record(publish_ns);
    }
  });
  ws.FlushCounters();
  if (!ws.queue_wait.empty()) {
    host_->RecordQueueWait(ws.queue_wait);
    ws.queue_wait.Clear();
  }
  host_->ReapRange(range, &ws.batcher);
  ws.batcher.Flush();
  NotifyProgress();
}

bool CpuEngine::ProcessReady(WorkerState& ws) {
  {
    std::lock_guard<std::mutex> lock(deferred_mu_);
    ws.ready.swap(ready_);
    ready_.clear();
    ready_count_.store(0, std::memory_order_release);
  }
  if (ws.ready.empty()) return false;
  for (uint32_t index : ws.ready) TryRun(index, ws);
  ws.FlushCounters();
  for (uint32_t index : ws.ready) host_->ReapSlot(index, &ws.batcher);
  ws.batcher.Flush();
  ws.ready.clear();
  NotifyProgress();
  return true;
}

bool CpuEngine::TryRun(uint32_t index, WorkerState& ws) {
  uint32_t* w = host_->ring().slot(index);
  uint32_t status = StatusWord(w).load(std::memory_order_acquire);
  if (!protocol::IsClaimable(static_cast<SlotStatus>(status))) return false;  // cancelled
  const uint32_t tenant = protocol::AtomicLoad(&w[protocol::kWordTenant]);
  if (!TenantEnabled(tenant)) {
    ParkSlot(tenant, index, ws);
    return false;
  }
  if (!StatusWord(w).compare_exchange_strong(status, static_cast<uint32_t>(SlotStatus::kClaimed),
                                             std::memory_order_acq_rel)) {
    return false;  // cancelled or claimed through another path
  }
  RunClaimed(index, ws);
  return true;
}

void CpuEngine::RunClaimed(uint32_t index, WorkerState& ws) {
  uint32_t* w = host_->ring().slot(index);
  host::SlotMeta& meta = host_->meta(index);
  const uint32_t op = w[protocol::kWordOpcode];
  ++ws.tenant_claims[w[protocol::kWordTenant] % ctl::kTenantFairnessCount];
  ++ws.priority_claims[w[protocol::kWordPriority]];
  if (op == protocol::opcode::kBatchFence &&
      meta.fence_pending.load(std::memory_order_seq_cst) != 0) {
    // Park the fence; whoever finishes its last predecessor re-queues it (see ReleaseFence).
    StatusWord(w).store(static_cast<uint32_t>(SlotStatus::kRequeue), std::memory_order_seq_cst);
    if (meta.fence_pending.load(std::memory_order_seq_cst) != 0) return;
    uint32_t expected = static_cast<uint32_t>(SlotStatus::kRequeue);
    if (!StatusWord(w).compare_exchange_strong(expected, static_cast<uint32_t>(SlotStatus::kClaimed),
                                               std::memory_order_acq_rel)) {
      return;  // the ready path claimed it
    }
  }
  const protocol::ExecResult r =
      protocol::Execute<protocol::ProductOpcodes>(w, index, ws.ctx);
  switch (r.status) {
    case SlotStatus::kDone:
    case SlotStatus::kFault: {
      std::copy(r.results, r.results + r.result_count, w + protocol::kWordArg0);
      std::fill(w + protocol::kWordArg0 + r.result_count, w + protocol::kSlotWords, 0u);
      const uint32_t fence = meta.fence_waiter;  // read before the slot becomes reapable
      StatusWord(w).store(static_cast<uint32_t>(r.status), std::memory_order_release);
      ++ws.done_count;
      if (op < ctl::kOpcodeMetricsCount) ++ws.opcode_runs[op];
      if (fence != host::kNoFence && host_->ReleaseFence(fence)) PushReady(fence);
      break;
    }
    case SlotStatus::kRequeue:
      StatusWord(w).store(static_cast<uint32_t>(SlotStatus::kRequeue), std::memory_order_release);
      PushReady(index);
      break;
    default: {  // WAIT_IO: the loader parked the slot already (and the io may even have
                // completed it); only a slot still CLAIMED moves here.
      uint32_t claimed = static_cast<uint32_t>(SlotStatus::kClaimed);
      StatusWord(w).compare_exchange_strong(claimed, static_cast<uint32_t>(r.status),
                                            std::memory_order_acq_rel);
      break;
    }
  }
}

void CpuEngine::ParkSlot(uint32_t tenant, uint32_t index, WorkerState& ws) {
  {
    std::lock_guard<std::mutex> lock(deferred_mu_);
    if (!draining_) {
      if (TenantEnabled(tenant)) {  // enabled meanwhile: SetTenantEnabled moved the list already
        ready_.push_back(index);
        ready_count_.store(ready_.size(), std::memory_order_release);
      } else {
        parked_[tenant].push_back(index);
        parked_count_.fetch_add(1);
      }
      return;
    }
  }
  // Cancelling may release a fence, which takes deferred_mu_ again: do it outside the lock.
  host_->CancelSlot(index, &ws.batcher);
}

void CpuEngine::PushReady(uint32_t index) {
  {
    std::lock_guard<std::mutex> lock(deferred_mu_);
    ready_.push_back(index);
    ready_count_.store(ready_.size(), std::memory_order_release);
  }
  WakeWorkers();
}

void CpuEngine::IdleWait(bool was_spinning) {
  // Counted as a sleeper before it stops counting as a spinner, so a publisher that skips the
  // wake-up because it saw a spinner is always followed by this thread's re-check below.
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  if (was_spinning) spinners_.fetch_sub(1, std::memory_order_seq_cst);
  const uint32_t epoch = work_epoch_.load(std::memory_order_seq_cst);
  if (!stop_.load(std::memory_order_seq_cst) && !host_->HasAnyClaimable() &&
      ready_count_.load(std::memory_order_seq_cst) == 0) {
    work_epoch_.wait(epoch, std::memory_order_seq_cst);
  }
  sleepers_.fetch_sub(1, std::memory_order_seq_cst);
}

void CpuEngine::WakeWorkers(bool all) {
  work_epoch_.fetch_add(1, std::memory_order_seq_cst);
  // A spinning worker will find a single batch by itself: no system call on the publish path.
  if (!all && spinners_.load(std::memory_order_seq_cst) != 0) return;
  if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
  if (all) {
    work_epoch_.notify_all();
  } else {
    work_epoch_.notify_one();
  }
}

}  // namespace mk::engine::cpu
