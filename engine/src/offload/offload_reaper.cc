// OffloadEngine's reaping side: reaper threads and helping waiters read completion records in
// order, finish the ring slots they name, and deliver completions. See offload_engine.h.
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "host/prefetch.h"
#include "mk/base/cpu_relax.h"
#include "mk/base/log.h"
#include "mk/engine/atomics.h"
#include "offload/offload_engine.h"

namespace mk::engine::offload {

namespace {

using protocol::SlotStatus;

// With work outstanding and no progress for this long, the reaper naps between polls.
constexpr auto kSpinWithoutProgress = std::chrono::milliseconds(1);
constexpr auto kNap = std::chrono::microseconds(50);
// How many entries ahead a reap pass prefetches what it will touch.
constexpr uint64_t kPrefetchAhead = 32;
// How often a reaper waiting on the kernel checks that it is still alive.
constexpr auto kHealthInterval = std::chrono::milliseconds(200);
// While waiters want a shard's reaping role, its reaper tries to take it only this often.
constexpr uint32_t kRetakeRole = 1024;

uint64_t LoadRecordWord(const uint64_t* word) {
  return std::atomic_ref<uint64_t>(*const_cast<uint64_t*>(word)).load(std::memory_order_acquire);
}

}  // namespace

bool OffloadEngine::ReadCompletion(const Shard& shard, uint64_t position,
                                   protocol::ExecResult* out) {
  const uint64_t* record = queues_->completion(shard.id, position);
  const uint32_t tag = PositionTag(position);
  const uint64_t head = LoadRecordWord(record);
  if (static_cast<uint32_t>(head >> 32) != tag) return false;
  out->status = static_cast<SlotStatus>(head & 0xff);
  out->result_count = std::min<uint32_t>((head >> 8) & 0xff, protocol::kArgWords);
  for (uint32_t i = 0; i < out->result_count; ++i) {
    uint64_t word = LoadRecordWord(record + 1 + i);
    // A GPU writes the result words before STATUS but without a fence: they may still be on
    // their way; they arrive within the PCIe latency.
    while (static_cast<uint32_t>(word >> 32) != tag) {
      base::CpuRelax();
      word = LoadRecordWord(record + 1 + i);
    }
    out->results[i] = static_cast<uint32_t>(word);
  }
  return true;
}

bool OffloadEngine::RecordReady(const Shard& shard) const {
  const uint64_t head = shard.head.load(std::memory_order_acquire);
  if (head >= shard.published.load(std::memory_order_acquire)) return false;
  const uint64_t word =
      std::atomic_ref<uint64_t>(*const_cast<uint64_t*>(queues_->completion(shard.id, head)))
          .load(std::memory_order_relaxed);
  return static_cast<uint32_t>(word >> 32) == PositionTag(head);
}

protocol::ExecResult OffloadEngine::ServeOnHost(uint32_t index) {
  const uint32_t* slot = ring_->slot(index);
  const uint32_t* args = slot + protocol::kWordArg0;
  if (loader_ == nullptr) return protocol::Fault(protocol::FaultCode::kResourceNotFound, args[0]);
  return loader_->LoadMiss(index, slot[protocol::kWordTenant], args);
}

bool OffloadEngine::FinishRecord(uint32_t index, protocol::ExecResult& r,
                                 host::ControlCounters& counters, uint32_t* epochs) {
  const uint32_t* slot = ring_->slot(index);
  const uint32_t op = slot[protocol::kWordOpcode];
  const uint32_t resource = slot[protocol::kWordArg0];  // before the results replace it
  bool served_on_host = false;
  if (op == protocol::opcode::kLoadMiss && static_cast<uint32_t>(r.status) == kAskHostStatus) {
    r = ServeOnHost(index);  // may park the slot in WAIT_IO or send it back to REQUEUE
    served_on_host = true;
  }
  if (loader_ != nullptr && op == protocol::opcode::kChecksum) loader_->Unpin(resource);
  if (loader_ != nullptr && op == protocol::opcode::kLoadMiss && !served_on_host) {
    loader_->CountExecutorHit(resource);
  }
  if (!FinishClaimed(index, r, counters)) return false;
  if (op == protocol::opcode::kBatchFence && r.status == SlotStatus::kDone) ++*epochs;
  return true;
}

uint32_t OffloadEngine::ReapPass(Shard& shard) {
  const uint64_t published = shard.published.load(std::memory_order_acquire);
  uint64_t head = shard.head.load(std::memory_order_relaxed);
  uint32_t epochs = 0;
  uint64_t consumed = 0;
  shard.reaped.clear();
  protocol::ExecResult r;
  ProfileClock::Time seen{};  // the first record read (profiling builds)
  while (head < published && shard.reaped.size() < kReapBatch) {
    if (head + kPrefetchAhead < published) {
      // The record (written by the kernel), the ring slot and its meta (written by the
      // dispatching producer's core) a few entries ahead: their transfers overlap instead of
      // each waiting for the one before.
      const uint32_t ahead = shard.index[(head + kPrefetchAhead) & sq_mask_];
      host::PrefetchForRead(queues_->completion(shard.id, head + kPrefetchAhead));
      host::PrefetchForWrite(ring_->slot(ahead));
      host::PrefetchForRead(&ring_->meta(ahead));
    }
    const uint32_t index = shard.index[head & sq_mask_];
    if (!ReadCompletion(shard, head, &r)) break;
    if (consumed == 0) seen = ProfileClock::Now();
    if (FinishRecord(index, r, shard.reap_counters, &epochs)) shard.reaped.push_back(index);
    ++head;
    ++consumed;
  }
  if (consumed == 0) return 0;
  uint32_t* control = control_->control().words().data();
  shard.reap_counters.Flush(control);
  if (epochs != 0) protocol::AtomicFetchAdd(&control[protocol::control::kEpoch], epochs);
  shard.head.store(head, std::memory_order_release);
  reaper_.ReapIndices(shard.reaped, shard.reap_batcher.get());  // delivers (flushes)
  profile_.OnReapPass(shard.id, consumed, seen);
  NotifyProgress();
  return static_cast<uint32_t>(consumed);
}

void OffloadEngine::HelpWhileWaiting(absl::FunctionRef<bool()> arrived, absl::Time until) {
  if (last_dispatch_.engine != this || last_dispatch_.shard >= shards_.size()) return;
  Shard& shard = *shards_[last_dispatch_.shard];
  shard.helpers.fetch_add(1, std::memory_order_seq_cst);  // the reaper makes way
  absl::Cleanup leave = [&] { shard.helpers.fetch_sub(1, std::memory_order_seq_cst); };
  // The reaper may be in a pass, another waiter may hold the role and deliver to us.
  std::unique_lock<std::mutex> role(shard.reap_mu, std::defer_lock);
  for (uint32_t polls = 1; !role.try_lock(); ++polls) {
    if (arrived() || (polls % 64 == 0 && absl::Now() >= until)) return;
    base::CpuRelax();
  }
  for (uint32_t polls = 1; !arrived(); ++polls) {
    // The teardown stops the kernel only once it held every reap_mu after this turned false.
    if (!kernel_running_.load(std::memory_order_acquire)) return;
    ReapPass(shard);
    if (polls % 64 == 0 && absl::Now() >= until) return;
  }
}

void OffloadEngine::ReaperLoop(Shard& shard) {
  // Named for top -H and perf (at most 15 characters).
  const std::string name = "mk-reaper-" + std::to_string(shard.id);
  pthread_setname_np(pthread_self(), name.c_str());
  ReaperState state;
  state.last_progress = state.last_health = std::chrono::steady_clock::now();
  while (!reapers_stop_.load(std::memory_order_acquire)) {
    if (ReaperPoll(shard, &state)) {
      state.polls = 0;
      continue;
    }
    if ((++state.polls & 63) != 0) {
      base::CpuRelax();
      continue;
    }
    ReaperPause(shard, &state);
  }
  std::lock_guard<std::mutex> role(shard.reap_mu);
  shard.reap_batcher->Flush();
}

bool OffloadEngine::ReaperPoll(Shard& shard, ReaperState* state) {
  // A publish handed its dispatch to this reaper (cleared first: a later publish sets it again).
  if (shard.dispatch_wanted.load(std::memory_order_relaxed) &&
      shard.dispatch_wanted.exchange(false, std::memory_order_seq_cst)) {
    Dispatch(/*small=*/false, &shard);
  }
  uint32_t reaped = 0;
  // A waiter reaps for itself: stay ready to take over, as if busy. Every kRetakeRole-th poll
  // the reaper tries anyway, in case the waiter was preempted before it took the role.
  bool helped = shard.helpers.load(std::memory_order_relaxed) != 0 &&
                ++state->helped_polls % kRetakeRole != 0;
  // The role is taken only when the record at the head is there: an idle spin reads two
  // counters and one record line, and leaves the role's line alone.
  if (!helped && RecordReady(shard)) {
    std::unique_lock<std::mutex> role(shard.reap_mu, std::try_to_lock);
    if (role.owns_lock()) {
      reaped = ReapPass(shard);
    } else {
      helped = true;
    }
  }
  if (scheduler_.has_ready()) Dispatch();
  if (helped) base::CpuRelax();
  return reaped != 0 || helped;
}

void OffloadEngine::ReaperPause(Shard& shard, ReaperState* state) {
  const auto now = std::chrono::steady_clock::now();
  if (state->polls == 64) state->last_progress = now;
  const bool outstanding =
      shard.head.load(std::memory_order_relaxed) != shard.published.load(std::memory_order_acquire);
  if (outstanding) {
    // The kernel owes completions: keep polling, napping once it made no progress for a while.
    if (now - state->last_progress < kSpinWithoutProgress) return;
    if (now - state->last_health > kHealthInterval) {
      state->last_health = now;
      CheckKernelHealth(shard, &state->reported_failure);
    }
    std::this_thread::sleep_for(kNap);
    return;
  }
  if (now - state->last_progress < absl::ToChronoNanoseconds(options_.idle_spin)) return;
  SleepUntilWork(shard);
  state->polls = 0;
}

void OffloadEngine::SleepUntilWork(Shard& shard) {
  shard.wake.Sleep([&] {
    return reapers_stop_.load(std::memory_order_seq_cst) ||
           (shard.id == 0 && scheduler_.has_ready()) ||
           shard.dispatch_wanted.load(std::memory_order_seq_cst) ||
           shard.head.load(std::memory_order_seq_cst) !=
               shard.published.load(std::memory_order_seq_cst);
  });
}

void OffloadEngine::CheckKernelHealth(const Shard& shard, bool* reported_failure) {
  std::lock_guard<std::mutex> lock(kernel_mu_);
  const absl::Status alive = kernel_ != nullptr ? kernel_->KernelState() : absl::OkStatus();
  if (!alive.ok() && !*reported_failure && shard.id == 0) {
    *reported_failure = true;  // the watchdog sees no progress and restarts the engine
    base::LogError(alive.message());
  }
}

}  // namespace mk::engine::offload
