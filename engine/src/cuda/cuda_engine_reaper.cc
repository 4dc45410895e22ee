// The CUDA engine's host-side data path: the dispatcher (claim -> submission queue -> doorbell)
// and the reaper (ring STATUS in SQ order -> completions). See cuda_engine.h.
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "cuda/cuda_engine.h"
#include "cuda/device_state.h"
#include "host/prefetch.h"
#include "mk/engine/atomics.h"
#include "mk/base/cpu_relax.h"

namespace mk::engine::cuda {

namespace ctl = protocol::control;
using protocol::SlotStatus;

namespace {

// With work outstanding and no progress for this long, the reaper naps between polls.
constexpr auto kSpinWithoutProgress = std::chrono::milliseconds(1);
constexpr auto kNap = std::chrono::microseconds(50);
// How many entries ahead a reap pass prefetches what it will touch.
constexpr uint64_t kPrefetchAhead = 32;
// Dispatches of at least this many entries write them with streaming stores (DeviceState).
constexpr size_t kStreamedDispatch = 32;
// Publishes of up to this many slots are dispatched by the publishing thread, into the shard
// the last small one used; larger ones by a reaper (cuda_engine.h).
constexpr size_t kSmallPublish = 8;
// Publishes of at least this many slots dispatch themselves when the reapers fall behind.
constexpr size_t kLargePublish = 256;
// How often a reaper waiting on the kernel checks that it is still alive.
constexpr auto kHealthInterval = std::chrono::milliseconds(200);

// While waiters want a shard's reaping role, its reaper tries to take it only this often.
constexpr uint32_t kRetakeRole = 1024;

// The engine and shard this thread dispatched into (or handed a publish to) last: where its
// WaitFor helps reap.
thread_local const void* t_dispatch_engine = nullptr;
thread_local uint32_t t_dispatch_shard = 0;

void RememberShard(const void* engine, uint32_t shard) {
  t_dispatch_engine = engine;
  t_dispatch_shard = shard;
}

}  // namespace

void CudaEngine::OnPublished(size_t slots) {
  if (slots > kSmallPublish && !inline_dispatch_) {
    // A reaper dispatches (into its own queue), round robin over the shards, when it is awake
    // (under load it spins). A sleeping one would take longer to wake than the dispatch takes:
    // this thread dispatches into its queue, which wakes it for the next one.
    const bool large = slots >= kLargePublish;
    Shard& shard = ShardForHandoff(large);
    if (shard.wake.sleepers() != 0) {
      Dispatch(/*small=*/false, &shard);
      return;
    }
    // A large publish finding that reaper still owing the dispatch it was last handed: the
    // reapers are the bottleneck (several producers), so this thread dispatches, into the first
    // free shard, instead of waiting for ring slots to free up. Smaller publishes always hand
    // off: one producer is its own bottleneck, and the reaper's one dispatch takes several of
    // its publishes at once.
    if (large && shard.dispatch_wanted.load(std::memory_order_relaxed)) {
      Dispatch(/*small=*/false);
      return;
    }
    shard.dispatch_wanted.store(true, std::memory_order_seq_cst);
    WakeReaper(shard);              // in case it went to sleep meanwhile
    RememberShard(this, shard.id);  // the slots go to that queue: a WaitFor helps reap there
    return;
  }
  Dispatch(slots <= kSmallPublish);
}

CudaEngine::Shard& CudaEngine::ShardForHandoff(bool large) {
  const uint32_t n = static_cast<uint32_t>(shards_.size());
  const uint32_t first = next_shard_.fetch_add(1, std::memory_order_relaxed) % n;
  Shard& a = *shards_[first];
  if (!large) return a;
  // Of the next two, the one with fewer entries in flight, so a reaper that fell behind is
  // given less (four reads of lines other threads write: worth it only for large publishes).
  Shard& b = *shards_[(first + 1) % n];
  auto in_flight = [](const Shard& s) {
    return s.published.load(std::memory_order_relaxed) - s.head.load(std::memory_order_relaxed);
  };
  return in_flight(b) < in_flight(a) ? b : a;
}

CudaEngine::Shard* CudaEngine::LockShardFor(bool small, std::unique_lock<std::mutex>* lock) {
  // The first shard nobody dispatches into. Large dispatches start where the last one did not,
  // spreading batches over the reapers. Small ones start at the shard the last small one used:
  // requests arriving one at a time (a client's ping-pong, unary RPCs) keep one reaper spinning
  // instead of reaching each of the reapers only every n-th request, by which time it has
  // gone to sleep and needs a futex wake-up (measured on the H100: a stream ping-pong of
  // 129 us instead of 62-74 us).
  const uint32_t n = static_cast<uint32_t>(shards_.size());
  const uint32_t first = small ? small_shard_.load(std::memory_order_relaxed)
                               : next_shard_.fetch_add(1, std::memory_order_relaxed) % n;
  Shard* shard = nullptr;
  for (uint32_t i = 0; i < n && shard == nullptr; ++i) {
    Shard* candidate = shards_[(first + i) % n].get();
    std::unique_lock<std::mutex> attempt(candidate->mu, std::try_to_lock);
    if (attempt.owns_lock()) {
      shard = candidate;
      *lock = std::move(attempt);
    }
  }
  if (shard == nullptr) {
    shard = shards_[first].get();
    *lock = std::unique_lock<std::mutex>(shard->mu);
  }
  if (small) small_shard_.store(shard->id, std::memory_order_relaxed);
  return shard;
}

void CudaEngine::Dispatch(bool small, Shard* into) {
  const auto started =
      profile_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
  if (!kernel_running_.load(std::memory_order_acquire)) return;  // Start dispatches later
  std::unique_lock<std::mutex> lock;
  Shard* shard = into;
  if (into != nullptr) {
    lock = std::unique_lock<std::mutex>(into->mu);
  } else {
    shard = LockShardFor(small, &lock);
  }
  // Re-read under the lock: the teardown flips it while holding every shard's lock.
  if (!kernel_running_.load(std::memory_order_acquire)) return;
  const uint64_t before = shard->tail;
  // Claim first (a compare-and-swap per slot, on ring lines this thread just published), then
  // write the entries: a stream of stores with no locked instruction between them, so the
  // stores into SQ lines (last read by the device) overlap instead of each draining before the
  // next claim.
  std::vector<uint32_t>& claimed = shard->claimed;
  claimed.clear();
  auto claim = [&](uint32_t index) {
    if (scheduler_.TryClaim(index, shard->counters, *shard->batcher)) claimed.push_back(index);
  };
  if (scheduler_.has_ready() && scheduler_.TakeReady(&shard->ready)) {
    for (uint32_t index : shard->ready) claim(index);
  }
  host::ClaimRange range;
  while (scheduler_.ClaimNext(options_.claim_batch, &range)) ring_->ForEachIndex(range, claim);
  const bool streaming = claimed.size() >= kStreamedDispatch;
  for (size_t i = 0; i < claimed.size(); ++i) {
    const uint32_t index = claimed[i];
    const uint32_t* slot = ring_->slot(index);
    const uint64_t position = shard->tail++;
    const uint32_t last = i + 1 == claimed.size() ? kEntryLastOfDispatch : 0;
    device_->WriteEntry(shard->id, position, index | last, slot, streaming);
    // The kernel reads a CHECKSUM's resident bytes: not evicted until the slot is reaped.
    if (loader_ != nullptr && slot[protocol::kWordOpcode] == protocol::opcode::kChecksum) {
      loader_->Pin(slot[protocol::kWordArg0]);
    }
    shard->index[position & sq_mask_] = index;
  }
  const auto claimed_at =
      profile_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
  if (shard->tail != before) {
    RememberShard(this, shard->id);
    device_->PublishTail(shard->id, shard->tail, streaming);
    shard->published.store(shard->tail, std::memory_order_seq_cst);
    WakeReaper(*shard);
  }
  shard->counters.Flush(control_->words());
  shard->batcher->Flush();
  if (profile_) {
    const uint64_t slots = shard->tail - before;
    dispatched_slots_.fetch_add(slots, std::memory_order_relaxed);
    dispatch_calls_.fetch_add(1, std::memory_order_relaxed);
    const auto now = std::chrono::steady_clock::now();
    dispatch_ns_.fetch_add(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - started).count(),
        std::memory_order_relaxed);
    if (slots == 1) {
      shard->doorbell_ns.store(
          std::chrono::duration_cast<std::chrono::nanoseconds>(claimed_at.time_since_epoch())
              .count(),
          std::memory_order_relaxed);
      single_calls_.fetch_add(1, std::memory_order_relaxed);
      single_claim_ns_.fetch_add(
          std::chrono::duration_cast<std::chrono::nanoseconds>(claimed_at - started).count());
      single_tail_ns_.fetch_add(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - claimed_at).count());
    }
  }
}

void CudaEngine::WakeReaper(Shard& shard) { shard.wake.Wake(/*all=*/false); }

bool CudaEngine::ReadCompletion(const Shard& shard, uint64_t position, protocol::ExecResult* out) {
  const uint64_t* record = device_->completion(shard.id, position);
  const uint32_t tag = PositionTag(position);
  auto load = [](const uint64_t* word) {
    return std::atomic_ref<const uint64_t>(*word).load(std::memory_order_acquire);
  };
  const uint64_t head = load(record);
  if (static_cast<uint32_t>(head >> 32) != tag) return false;
  out->status = static_cast<SlotStatus>(head & 0xff);
  out->result_count = std::min<uint32_t>((head >> 8) & 0xff, protocol::kArgWords);
  for (uint32_t i = 0; i < out->result_count; ++i) {
    uint64_t word = load(record + 1 + i);
    // The kernel wrote the result words before STATUS but without a fence: they may still be
    // on their way; they arrive within the PCIe latency.
    while (static_cast<uint32_t>(word >> 32) != tag) {
      base::CpuRelax();
      word = load(record + 1 + i);
    }
    out->results[i] = static_cast<uint32_t>(word);
  }
  return true;
}

bool CudaEngine::RecordReady(const Shard& shard) const {
  const uint64_t head = shard.head.load(std::memory_order_acquire);
  if (head >= shard.published.load(std::memory_order_acquire)) return false;
  const uint64_t word = std::atomic_ref<const uint64_t>(*device_->completion(shard.id, head))
                            .load(std::memory_order_relaxed);
  return static_cast<uint32_t>(word >> 32) == PositionTag(head);
}

protocol::ExecResult CudaEngine::ServeOnHost(uint32_t index) {
  const uint32_t* slot = ring_->slot(index);
  const uint32_t* args = slot + protocol::kWordArg0;
  if (loader_ == nullptr) return protocol::Fault(protocol::FaultCode::kResourceNotFound, args[0]);
  return loader_->LoadMiss(index, slot[protocol::kWordTenant], args);
}

uint32_t CudaEngine::ReapPass(Shard& shard) {
  host::CompletionBatcher& batcher = *shard.reap_batcher;
  host::ControlCounters& counters = shard.reap_counters;
  std::vector<uint32_t>& reaped = shard.reaped;
  const uint64_t published = shard.published.load(std::memory_order_acquire);
  uint64_t head = shard.head.load(std::memory_order_relaxed);
  uint32_t epochs = 0;
  uint64_t consumed = 0;
  reaped.clear();
  protocol::ExecResult r;
  std::chrono::steady_clock::time_point seen;  // MK_CUDA_PROFILE: the first record read
  while (head < published && reaped.size() < kReapBatch) {
    if (head + kPrefetchAhead < published) {
      // The record (written by the device), the ring slot and its meta (written by the
      // dispatching producer's core) a few entries ahead: their transfers overlap instead of
      // each waiting for the one before.
      const uint32_t ahead = shard.index[(head + kPrefetchAhead) & sq_mask_];
      host::PrefetchForRead(device_->completion(shard.id, head + kPrefetchAhead));
      host::PrefetchForWrite(ring_->slot(ahead));
      host::PrefetchForRead(&ring_->meta(ahead));
    }
    const uint32_t index = shard.index[head & sq_mask_];
    if (!ReadCompletion(shard, head, &r)) break;
    if (profile_ && consumed == 0) seen = std::chrono::steady_clock::now();
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
    if (FinishClaimed(index, r, counters)) {
      if (op == protocol::opcode::kBatchFence && r.status == SlotStatus::kDone) ++epochs;
      reaped.push_back(index);
    }
    ++head;
    ++consumed;
  }
  if (consumed == 0) return 0;
  uint32_t* control = control_->words();
  counters.Flush(control);
  if (epochs != 0) protocol::AtomicFetchAdd(&control[ctl::kEpoch], epochs);
  shard.head.store(head, std::memory_order_release);
  reaper_.ReapIndices(reaped, &batcher);  // delivers (flushes the batcher)
  if (profile_) ProfileReapPass(shard, consumed, seen);
  NotifyProgress();
  return static_cast<uint32_t>(consumed);
}

void CudaEngine::ProfileReapPass(Shard& shard, uint64_t consumed,
                                 std::chrono::steady_clock::time_point seen) {
  reap_passes_.fetch_add(1, std::memory_order_relaxed);
  reaped_slots_.fetch_add(consumed, std::memory_order_relaxed);
  const int64_t deliver_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - seen)
          .count();
  reap_ns_.fetch_add(deliver_ns, std::memory_order_relaxed);
  const int64_t rang = shard.doorbell_ns.exchange(0, std::memory_order_relaxed);
  if (consumed != 1 || rang == 0) return;
  const int64_t seen_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(seen.time_since_epoch()).count();
  // Means without the outliers (wake-ups from idle, preemption), which would hide the path.
  constexpr int64_t kOutlierNs = 30'000;
  if (seen_ns - rang > kOutlierNs || deliver_ns > kOutlierNs) return;
  single_device_ns_.fetch_add(seen_ns - rang, std::memory_order_relaxed);
  single_deliver_ns_.fetch_add(deliver_ns, std::memory_order_relaxed);
  // Every 10000th: the figures since the last window, so a drift over a run shows.
  if (single_reaps_.fetch_add(1, std::memory_order_acq_rel) % 10000 == 9999) PrintProfile(true);
}

void CudaEngine::HelpWhileWaiting(absl::FunctionRef<bool()> arrived, absl::Time until) {
  if (t_dispatch_engine != this || t_dispatch_shard >= shards_.size()) return;
  Shard& shard = *shards_[t_dispatch_shard];
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

void CudaEngine::ReaperLoop(Shard& shard) {
  // Named for top -H and perf (at most 15 characters).
  const std::string name = "mk-reaper-" + std::to_string(shard.id);
  pthread_setname_np(pthread_self(), name.c_str());
  const auto idle_spin = absl::ToChronoNanoseconds(options_.idle_spin);
  auto last_progress = std::chrono::steady_clock::now();
  auto last_health = last_progress;
  bool reported_failure = false;
  uint32_t polls = 0;
  uint32_t helped_polls = 0;
  while (!reapers_stop_.load(std::memory_order_acquire)) {
    // A publish handed its dispatch to this reaper (cleared first: a later publish sets it again).
    if (shard.dispatch_wanted.load(std::memory_order_relaxed) &&
        shard.dispatch_wanted.exchange(false, std::memory_order_seq_cst)) {
      Dispatch(/*small=*/false, &shard);
    }
    uint32_t n = 0;
    // A waiter reaps for itself: stay ready to take over, as if busy. Every kRetakeRole-th
    // poll the reaper tries anyway, in case the waiter was preempted before it took the role.
    bool helped =
        shard.helpers.load(std::memory_order_relaxed) != 0 && ++helped_polls % kRetakeRole != 0;
    // The role is taken only when the record at the head is there: an idle spin reads two
    // counters and one record line, and leaves the role's line alone.
    if (!helped && RecordReady(shard)) {
      std::unique_lock<std::mutex> role(shard.reap_mu, std::try_to_lock);
      if (role.owns_lock()) {
        n = ReapPass(shard);
      } else {
        helped = true;
      }
    }
    if (scheduler_.has_ready()) Dispatch();
    if (n != 0 || helped) {
      if (helped) base::CpuRelax();
      polls = 0;
      continue;
    }
    if ((++polls & 63) != 0) {
      base::CpuRelax();
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (polls == 64) last_progress = now;
    const bool outstanding = shard.head.load(std::memory_order_relaxed) !=
                             shard.published.load(std::memory_order_acquire);
    if (outstanding) {
      // The kernel owes completions: keep polling, napping once it made no progress for a while.
      if (now - last_progress < kSpinWithoutProgress) continue;
      if (now - last_health > kHealthInterval) {
        last_health = now;
        std::lock_guard<std::mutex> lock(device_mu_);
        absl::Status alive = device_ != nullptr ? device_->KernelState() : absl::OkStatus();
        if (!alive.ok() && !reported_failure && shard.id == 0) {
          reported_failure = true;  // the watchdog sees no progress and restarts the engine
          std::fprintf(stderr, "%s\n", alive.ToString().c_str());
        }
      }
      std::this_thread::sleep_for(kNap);
      continue;
    }
    if (now - last_progress < idle_spin) continue;
    // Idle: park until a dispatch or (shard 0) a ready slot wakes us.
    shard.wake.Sleep([&] {
      return reapers_stop_.load(std::memory_order_seq_cst) ||
             (shard.id == 0 && scheduler_.has_ready()) ||
             shard.dispatch_wanted.load(std::memory_order_seq_cst) ||
             shard.head.load(std::memory_order_seq_cst) !=
                 shard.published.load(std::memory_order_seq_cst);
    });
    polls = 0;
  }
  std::lock_guard<std::mutex> role(shard.reap_mu);
  shard.reap_batcher->Flush();
}

}  // namespace mk::engine::cuda
