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

  uint64_t size() const { return size_.load(std::memory_order_relaxed); }

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

  std::mutex mu_;
  std::condition_variable arrived_;
  absl::flat_hash_map<Key, Completion> completions_;  // guarded by mu_
  uint32_t blocked_waiters_ = 0;                       // guarded by mu_
  std::atomic<uint64_t> generation_{0};  // bumped (under mu_) after every batch
  std::atomic<uint64_t> size_{0};
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_COMPLETION_STORE_H_
