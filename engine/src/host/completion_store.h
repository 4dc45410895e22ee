// Completions of slots published without a sink, kept until WaitFor collects them.
//
// Thread safety: OnCompletions is called by engine threads (workers, cancel, shutdown); Take by
// any number of waiting callers. One mutex guards the map; waiters first spin briefly on a
// generation counter (a round trip on an idle engine is a few microseconds, far below a futex
// wake-up), then block on a condition variable with their deadline. std::mutex rather than
// absl::Mutex throughout the engine: Debian's Abseil is built without ThreadSanitizer
// annotations, and the concurrency tests run under TSan.
#ifndef MK_ENGINE_SRC_HOST_COMPLETION_STORE_H_
#define MK_ENGINE_SRC_HOST_COMPLETION_STORE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mk/engine/engine.h"

namespace mk::engine::host {

class CompletionStore final : public CompletionSink {
 public:
  void OnCompletions(absl::Span<const Completion> batch) override;

  // Removes and returns the completions of `tickets` present by `deadline`, waiting until all
  // are present or the deadline passes.
  std::vector<Completion> Take(uint32_t tenant, absl::Span<const uint64_t> tickets,
                               absl::Time deadline);

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

  uint64_t size() const { return size_.load(std::memory_order_relaxed); }

  // Completions owed to callers of Take: slots published without a sink and not yet handed
  // out (in flight or stored). Exact at any moment, unlike in_flight + size(), which can count
  // a just-delivered completion twice.
  uint64_t owed() const { return owed_.load(std::memory_order_acquire); }
  void AddOwed(uint64_t n) { owed_.fetch_add(n, std::memory_order_acq_rel); }
  // Completions a caller took but could not deliver, handed back (they are owed again).
  void Return(absl::Span<const Completion> batch) {
    AddOwed(batch.size());
    OnCompletions(batch);
  }

 private:
  struct Key {
    uint32_t tenant;
    uint64_t ticket;
    friend bool operator==(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.tenant, k.ticket);
    }
  };
  // Moves the completions of `tickets` present now into `out`; returns how many are missing.
  size_t Collect(uint32_t tenant, absl::Span<const uint64_t> tickets, std::vector<Completion>* out,
                 std::vector<bool>* taken);  // needs mu_

  struct AsyncWaiter {
    uint32_t tenant = 0;
    size_t remaining = 0;
    std::vector<uint64_t> waiting;  // tickets registered in async_keys_
    std::vector<Completion> got;
    Callback done;
  };

  std::mutex mu_;
  std::condition_variable arrived_;
  absl::flat_hash_map<uint64_t, AsyncWaiter> async_;  // guarded by mu_
  // (tenant, ticket) -> waiters in arrival order; a completion goes to the first. Guarded by mu_.
  absl::flat_hash_map<Key, std::vector<uint64_t>> async_keys_;
  uint64_t next_async_id_ = 1;                        // guarded by mu_
  absl::flat_hash_map<Key, Completion> completions_;  // guarded by mu_
  uint32_t blocked_waiters_ = 0;                       // guarded by mu_
  std::atomic<uint64_t> generation_{0};  // bumped (under mu_) after every batch
  std::atomic<uint64_t> size_{0};
  std::atomic<uint64_t> owed_{0};
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_COMPLETION_STORE_H_
