// Helpers shared by the engine test suites (CPU now, CUDA on the GPU machine).
#ifndef MK_TESTS_ENGINE_SUITE_ENGINE_TEST_UTIL_H_
#define MK_TESTS_ENGINE_SUITE_ENGINE_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "mk/engine/engine.h"

namespace mk::engine::testing {

// Records every completion in arrival order; waits for a count with a deadline.
class RecordingSink final : public CompletionSink {
 public:
  void OnCompletions(absl::Span<const Completion> batch) override {
    absl::MutexLock lock(&mu_);
    completions_.insert(completions_.end(), batch.begin(), batch.end());
  }
  // True when at least `n` completions arrived before the deadline.
  bool WaitForCount(size_t n, absl::Duration timeout = absl::Seconds(30)) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return completions_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  std::vector<Completion> completions() {
    absl::MutexLock lock(&mu_);
    return completions_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Completion> completions_ ABSL_GUARDED_BY(mu_);
};

inline SlotPayload Slot(uint32_t opcode, std::vector<uint32_t> args = {},
                        uint32_t priority = protocol::kDefaultPriority) {
  SlotPayload p;
  p.opcode = opcode;
  p.priority = priority;
  for (size_t i = 0; i < args.size(); ++i) p.args[i] = args[i];
  return p;
}

inline std::vector<uint64_t> Tickets(const PublishResult& r) {
  std::vector<uint64_t> t;
  for (uint32_t i = 0; i < r.count; ++i) t.push_back(r.first_ticket + i);
  return t;
}

// Waits until `predicate` holds or the timeout passes; returns the predicate's last value.
template <typename Predicate>
bool WaitUntil(Predicate predicate, absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!predicate()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::yield();  // polls engine-internal state (no event to block on)
  }
  return true;
}

}  // namespace mk::engine::testing

#endif  // MK_TESTS_ENGINE_SUITE_ENGINE_TEST_UTIL_H_
