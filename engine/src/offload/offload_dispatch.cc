// OffloadEngine's dispatch side: which thread dispatches a publish, which shard it goes to, and
// the dispatch itself (claim -> submission queue entries -> doorbell). See offload_engine.h.

#include "offload/offload_engine.h"

namespace mk::engine::offload {

namespace {

// Dispatches of at least this many entries write them with streaming stores
// (SubmissionQueues::WriteEntry).
constexpr size_t kStreamedDispatch = 32;
// Publishes of up to this many slots are dispatched by the publishing thread, into the shard
// the last small one used; larger ones by a reaper (offload_engine.h).
constexpr size_t kSmallPublish = 8;
// Publishes of at least this many slots dispatch themselves when the reapers fall behind.
constexpr size_t kLargePublish = 256;

}  // namespace

thread_local OffloadEngine::LastDispatch OffloadEngine::last_dispatch_;

void OffloadEngine::OnPublished(size_t slots) {
  if (slots <= kSmallPublish || options_.cuda.inline_dispatch) {
    Dispatch(slots <= kSmallPublish);
    return;
  }
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
  WakeReaper(shard);                  // in case it went to sleep meanwhile
  last_dispatch_ = {this, shard.id};  // the slots go to that queue: a WaitFor helps reap there
}

OffloadEngine::Shard& OffloadEngine::ShardForHandoff(bool large) {
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

OffloadEngine::Shard* OffloadEngine::LockShardFor(bool small, std::unique_lock<std::mutex>* lock) {
  // The first shard nobody dispatches into. Large dispatches start where the last one did not,
  // spreading batches over the reapers. Small ones start at the shard the last small one used:
  // requests arriving one at a time (a client's ping-pong, unary RPCs) keep one reaper spinning
  // instead of reaching each of the reapers only every n-th request, by which time it has
  // gone to sleep and needs a futex wake-up.
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

void OffloadEngine::Dispatch(bool small, Shard* into) {
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
  DispatchLocked(*shard);
}

void OffloadEngine::DispatchLocked(Shard& shard) {
  const ProfileClock::Time started = ProfileClock::Now();
  const uint64_t before = shard.tail;
  // Claim first (a compare-and-swap per slot, on ring lines this thread just published), then
  // write the entries: a stream of stores with no locked instruction between them, so the
  // stores into SQ lines (last read by the device) overlap instead of each draining before the
  // next claim.
  std::vector<uint32_t>& claimed = shard.claimed;
  claimed.clear();
  auto claim = [&](uint32_t index) {
    if (scheduler_.TryClaim(index, shard.counters, *shard.batcher)) claimed.push_back(index);
  };
  if (scheduler_.has_ready() && scheduler_.TakeReady(&shard.ready)) {
    for (uint32_t index : shard.ready) claim(index);
  }
  host::ClaimRange range;
  while (scheduler_.ClaimNext(options_.claim_batch, &range)) ring_->ForEachIndex(range, claim);
  const bool streaming = claimed.size() >= kStreamedDispatch;
  for (size_t i = 0; i < claimed.size(); ++i) {
    const uint32_t index = claimed[i];
    const uint32_t* slot = ring_->slot(index);
    const uint64_t position = shard.tail++;
    const uint32_t last = i + 1 == claimed.size() ? kEntryLastOfDispatch : 0;
    queues_->WriteEntry(shard.id, position, index | last, slot, streaming);
    // The kernel reads a CHECKSUM's resident bytes: not evicted until the slot is reaped.
    if (loader_ != nullptr && slot[protocol::kWordOpcode] == protocol::opcode::kChecksum) {
      loader_->Pin(slot[protocol::kWordArg0]);
    }
    shard.index[position & sq_mask_] = index;
  }
  const ProfileClock::Time claimed_at = ProfileClock::Now();
  if (shard.tail != before) {
    last_dispatch_ = {this, shard.id};
    queues_->PublishTail(shard.id, shard.tail, streaming);
    shard.published.store(shard.tail, std::memory_order_seq_cst);
    WakeReaper(shard);
  }
  shard.counters.Flush(control_->control().words().data());
  shard.batcher->Flush();
  profile_.OnDispatch(shard.id, shard.tail - before, started, claimed_at, ProfileClock::Now());
}

}  // namespace mk::engine::offload
