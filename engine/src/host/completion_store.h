// Completions of slots published without a sink, kept until WaitFor collects them.
//
// Thread safety: OnCompletions is called by engine threads (workers, cancel, shutdown); Take by
// any number of waiting callers. One mutex guards the map; waiters first spin briefly (a round
// trip on an idle engine is a few microseconds, far below a futex wake-up), then block on a
// condition variable with their deadline. A waiter missing one ticket spins on a handoff record
// of its own that OnCompletions fills directly (no map insert, no mutex on the waiter's way
// out: the round trip's last cache-line transfers); others spin on a generation counter and
// collect from the map. std::mutex rather than
// absl::Mutex throughout the engine: Debian's Abseil is built without ThreadSanitizer
// annotations, and the concurrency tests run under TSan.
#ifndef MK_ENGINE_SRC_HOST_COMPLETION_STORE_H_
#define MK_ENGINE_SRC_HOST_COMPLETION_STORE_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mk/engine/engine.h"

namespace mk::engine::host {

class CompletionStore final : public CompletionSink {
 public:
  // `max_tenants`: tenants counted one by one in owed(tenant).
  // `ttl`: how long a stored completion waits to be collected before DropExpired drops it.
  CompletionStore(uint32_t max_tenants, absl::Duration ttl)
      : max_tenants_(max_tenants),
        ttl_(ttl),
        bucket_width_(std::max(ttl / 8, absl::Milliseconds(1))),
        owed_by_tenant_(std::make_unique<std::atomic<uint64_t>[]>(max_tenants)),
        settled_(std::make_unique<SettledEntry[]>(kSettledMemory)) {}

  void OnCompletions(absl::Span<const Completion> batch) override;

  // Removes and returns the completions of `tickets` present by `deadline`, waiting until all
  // are present or the deadline passes.
  std::vector<Completion> Take(uint32_t tenant, absl::Span<const uint64_t> tickets,
                               absl::Time deadline) {
    return Take(tenant, tickets, deadline, [](absl::FunctionRef<bool()>, absl::Time) {});
  }
  // Work a waiter may do on its own thread while it spins, so that its completions arrive
  // sooner (the CUDA engine reaps the waiter's submission queue itself): returns once
  // `arrived()` holds or `until` passes, or at once when it has nothing to do.
  using SpinHelper = absl::FunctionRef<void(absl::FunctionRef<bool()> arrived, absl::Time until)>;
  std::vector<Completion> Take(uint32_t tenant, absl::Span<const uint64_t> tickets,
                               absl::Time deadline, SpinHelper help);

  using Callback = std::function<void(std::vector<Completion>)>;
  // Asynchronous Take: `done` runs exactly once with the completions of `tickets`, as soon as
  // all have arrived (on the thread delivering the last one, or on this thread if all are
  // present now), or when Expire(id) is called first (with those present then). Completions
  // routed to a waiter are never stored. Several waiters may wait for one ticket: the first
  // gets it (and may hand it back with OnCompletions). Returns the waiter id.
  uint64_t TakeAsync(uint32_t tenant, absl::Span<const uint64_t> tickets, Callback done);
  // Finishes waiter `id` with what it has collected; no effect if it finished already.
  void Expire(uint64_t id);
  size_t async_waiters();
  // Callers of Take blocked on the condition variable (past their spin), and those spinning
  // on a handoff record: what tests wait for before delivering.
  size_t blocked_waiters();
  // FirstSettled callers waiting for a delivery in progress.
  size_t delivery_watchers();
  size_t handoff_waiters();

  uint64_t size() const { return size_.load(std::memory_order_relaxed); }

  // Completions owed to callers of Take: slots published without a sink and not yet handed
  // out (in flight, stored, or with an asynchronous waiter whose callback is still running).
  // Exact at any moment, unlike in_flight + size(), which can count a just-delivered
  // completion twice.
  uint64_t owed() const { return owed_.load(std::memory_order_acquire); }
  // The same, for one tenant (the per-tenant quota).
  uint64_t owed(uint32_t tenant) const {
    return tenant < max_tenants_ ? owed_by_tenant_[tenant].load(std::memory_order_acquire) : 0;
  }
  void AddOwed(uint32_t tenant, uint64_t n) {
    owed_.fetch_add(n, std::memory_order_acq_rel);
    if (tenant < max_tenants_) owed_by_tenant_[tenant].fetch_add(n, std::memory_order_acq_rel);
  }
  // Completions a caller took but could not deliver, handed back: pending (and owed) again.
  // Called from inside a TakeAsync callback (the Poll that was cancelled), they were never
  // settled: a re-poll meanwhile waits for them instead of being told they were collected.
  void Return(absl::Span<const Completion> batch);

  // How a ticket's completion left the store for good.
  enum class Settled : uint8_t { kNo, kCollected, kDropped };
  struct SettledTicket {
    uint64_t ticket = 0;
    Settled how = Settled::kNo;
  };
  // The first of `tickets` whose completion `tenant` already collected or the store dropped
  // after the time-to-live, among the last ~kSettledMemory settlements (older ones are
  // forgotten, and a wait for them runs out as before); nullopt if none. A handed-back
  // completion (Return) is pending again. A ticket whose completion an asynchronous waiter's
  // callback is delivering right now is neither: this waits (at most kDeliveryWait) for the
  // callback to return, so a caller that got its answer and polls again at once is told the
  // ticket was collected (the answer can reach it before the callback returns).
  std::optional<SettledTicket> FirstSettled(uint32_t tenant, absl::Span<const uint64_t> tickets);
  // A tenant's ticket: the store's map key, and what Return records inside a waiter's callback.
  struct Key {
    uint32_t tenant;
    uint64_t ticket;
    friend bool operator==(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.tenant, k.ticket);
    }
  };
  static constexpr size_t kSettledMemory = size_t{1} << 16;
  static constexpr absl::Duration kDeliveryWait = absl::Seconds(1);
  // Drops stored completions nobody collected within the time-to-live (they expire between ttl
  // and ttl * 9/8 after they arrived); they are owed no more. Returns how many were dropped.
  // Costs a scan of the stored completions only when some did expire.
  uint64_t DropExpired(absl::Time now);
  absl::Duration ttl() const { return ttl_; }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  // Which of a Take's tickets were collected (inline for the usual few: no allocation).
  using TakenFlags = absl::InlinedVector<bool, 16>;
  // Moves the completions of `tickets` present now into `out`; returns how many are missing.
  size_t Collect(uint32_t tenant, absl::Span<const uint64_t> tickets, std::vector<Completion>* out,
                 TakenFlags* taken);  // needs mu_

  // A waiter spinning for exactly one missing ticket (on its own stack). Registered in
  // handoffs_ under mu_; OnCompletions (under mu_) removes it from there, writes `completion`,
  // then sets `state` (release): after that store the record belongs to the waiter again.
  struct alignas(64) Handoff {
    Key key;
    std::atomic<uint32_t> state{0};  // 1: `completion` is written
    Completion completion;
  };
  static constexpr size_t kMaxHandoffs = 8;  // more spinning waiters use the generation counter
  // Hands `c` to the waiter registered for its key, if any (needs mu_).
  bool HandOff(const Key& key, const Completion& c);
  // Removes `h` from handoffs_ unless OnCompletions took it already (needs mu_).
  void Unregister(Handoff* h);
  // Blocks until a batch newer than generation `seen` arrives or `until` passes (callers re-arm
  // at most a minute ahead, so an infinite deadline never overflows the clock conversion).
  void BlockForBatch(uint64_t seen, absl::Time until);
  // Removes entry i of handoffs_ (the last one takes its place; needs mu_).
  void DropHandoff(uint32_t i) { handoffs_[i] = handoffs_[--handoff_count_]; }

  struct AsyncWaiter {
    uint32_t tenant = 0;
    size_t remaining = 0;
    std::vector<uint64_t> waiting;  // tickets registered in async_keys_
    std::vector<Completion> got;
    Callback done;
  };
  // Records the completions `waiter` got as being delivered (FirstSettled waits for them);
  // called under mu_ when the waiter finishes, before Deliver.
  void BeginDelivery(const AsyncWaiter& waiter);
  // Runs `waiter`'s callback with what it got (never under mu_), then settles what the callback
  // did not hand back with Return: owed no more, remembered as collected.
  void Deliver(AsyncWaiter& waiter);

  std::mutex mu_;
  std::condition_variable arrived_;
  absl::flat_hash_map<uint64_t, AsyncWaiter> async_;  // guarded by mu_
  // (tenant, ticket) -> waiters in arrival order; a completion goes to the first. Guarded by mu_.
  absl::flat_hash_map<Key, std::vector<uint64_t>> async_keys_;
  uint64_t next_async_id_ = 1;  // guarded by mu_
  // Completions a finished waiter's callback is delivering now (a count per key: a handed-back
  // one may be in a second delivery already), and the FirstSettled callers waiting for them.
  // Guarded by mu_.
  absl::flat_hash_map<Key, uint32_t> delivering_;
  uint32_t delivery_watchers_ = 0;
  std::condition_variable delivered_;
  // A stored completion and the arrival bucket it counts in.
  struct Stored {
    Completion completion;
    uint64_t bucket;
  };
  absl::flat_hash_map<Key, Stored> completions_;  // guarded by mu_
  uint32_t blocked_waiters_ = 0;                  // guarded by mu_
  Handoff* handoffs_[kMaxHandoffs] = {};          // the first handoff_count_; mu_
  uint32_t handoff_count_ = 0;                    // guarded by mu_
  std::atomic<uint64_t> size_{0};
  // Lines of their own: waiters spin on the generation; publishers add to owed_ on every
  // publish. Neither should pull the map's or the mutex's line away from the reaper.
  alignas(64) std::atomic<uint64_t> generation_{0};  // bumped (under mu_) after every batch
  alignas(64) std::atomic<uint64_t> owed_{0};
  // The completion of `key` handed out or dropped: owed no more, and remembered as settled
  // (needs mu_).
  void Settle(const Key& key, Settled how = Settled::kCollected) {
    owed_.fetch_sub(1, std::memory_order_acq_rel);
    if (key.tenant < max_tenants_) {
      owed_by_tenant_[key.tenant].fetch_sub(1, std::memory_order_acq_rel);
    }
    settled_[SettledIndex(key)] = SettledEntry{key, how};
  }
  static size_t SettledIndex(const Key& key) { return absl::HashOf(key) & (kSettledMemory - 1); }
  const uint32_t max_tenants_;
  const std::unique_ptr<std::atomic<uint64_t>[]> owed_by_tenant_;
  // The last settlements, hashed by key (a newer one overwrites an older one in its entry).
  // Guarded by mu_.
  struct SettledEntry {
    Key key{UINT32_MAX, 0};
    Settled how = Settled::kNo;
  };
  const std::unique_ptr<SettledEntry[]> settled_;
  // Arrival buckets for the time-to-live: each covers bucket_width_ of arrivals and counts its
  // completions still stored. Guarded by mu_.
  struct Bucket {
    absl::Time start;
    uint64_t live = 0;
  };
  // The bucket a completion arriving `now` counts in (opens one when needed; needs mu_).
  uint64_t BucketFor(absl::Time now);
  // A stored completion left the store (collected or dropped; needs mu_).
  void Unstore(uint64_t bucket);
  const absl::Duration ttl_;
  const absl::Duration bucket_width_;
  std::deque<Bucket> buckets_;    // guarded by mu_
  uint64_t first_bucket_id_ = 0;  // id of buckets_.front(); guarded by mu_
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_COMPLETION_STORE_H_
