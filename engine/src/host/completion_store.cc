#include "engine/src/host/completion_store.h"

#include "absl/base/optimization.h"

namespace mk::engine::host {

namespace {
// How long a waiter spins on the generation counter before blocking.
constexpr absl::Duration kSpinBeforeBlocking = absl::Microseconds(50);
}  // namespace

void CompletionStore::OnCompletions(absl::Span<const Completion> batch) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Completion& c : batch) completions_.insert_or_assign(Key{c.tenant, c.ticket}, c);
    size_.store(completions_.size(), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    wake = blocked_waiters_ != 0;
  }
  if (wake) arrived_.notify_all();
}

size_t CompletionStore::Collect(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                std::vector<Completion>* out, std::vector<bool>* taken) {
  size_t missing = 0;
  for (size_t i = 0; i < tickets.size(); ++i) {
    if ((*taken)[i]) continue;
    auto it = completions_.find(Key{tenant, tickets[i]});
    if (it == completions_.end()) {
      ++missing;
      continue;
    }
    out->push_back(it->second);
    completions_.erase(it);
    (*taken)[i] = true;
  }
  size_.store(completions_.size(), std::memory_order_relaxed);
  return missing;
}

std::vector<Completion> CompletionStore::Take(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                              absl::Time deadline) {
  std::vector<Completion> out;
  out.reserve(tickets.size());
  std::vector<bool> taken(tickets.size(), false);
  const absl::Time spin_until = std::min(deadline, absl::Now() + kSpinBeforeBlocking);
  for (;;) {
    const uint64_t seen = generation_.load(std::memory_order_acquire);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (Collect(tenant, tickets, &out, &taken) == 0) return out;
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) return out;
    if (now < spin_until) {
      while (generation_.load(std::memory_order_acquire) == seen && absl::Now() < spin_until) {
      }
      continue;
    }
    // Block until a new batch arrives or the deadline passes (re-armed at most every minute so
    // an infinite deadline never overflows the clock conversion).
    const auto until = absl::ToChronoTime(std::min(deadline, now + absl::Minutes(1)));
    std::unique_lock<std::mutex> lock(mu_);
    ++blocked_waiters_;
    arrived_.wait_until(lock, until, [&] {
      return generation_.load(std::memory_order_acquire) != seen;
    });
    --blocked_waiters_;
  }
}

}  // namespace mk::engine::host
