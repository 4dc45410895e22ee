#include "host/completion_store.h"

#include <algorithm>
#include <thread>

#include "absl/base/optimization.h"
#include "absl/container/flat_hash_set.h"

namespace mk::engine::host {

namespace {
// How long a waiter spins on the generation counter before blocking: long enough to cover a
// LOAD_MISS served by the CUDA engine (blocking first adds a futex wake-up to it:
// docs/performance.md), shorter where no core is spare for spinning.
absl::Duration SpinBeforeBlocking() {
  static const absl::Duration spin =
      std::thread::hardware_concurrency() > 4 ? absl::Microseconds(200) : absl::Microseconds(50);
  return spin;
}
}  // namespace

void CompletionStore::OnCompletions(absl::Span<const Completion> batch) {
  bool wake;
  std::vector<AsyncWaiter> finished;
  const absl::Time now = absl::Now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Completion& c : batch) {
      const Key key{c.tenant, c.ticket};
      if (!async_keys_.empty()) {
        auto k = async_keys_.find(key);
        if (k != async_keys_.end()) {
          auto w = async_.find(k->second.front());
          k->second.erase(k->second.begin());
          if (k->second.empty()) async_keys_.erase(k);
          w->second.got.push_back(c);  // owed until Deliver settles it
          if (--w->second.remaining == 0) {
            BeginDelivery(w->second);
            finished.push_back(std::move(w->second));
            async_.erase(w);
          }
          continue;
        }
      }
      if (handoff_count_ != 0 && HandOff(key, c)) continue;
      auto [it, fresh] = completions_.try_emplace(key, Stored{c, 0});
      if (!fresh) Unstore(it->second.bucket);  // replaced (a handed-back duplicate)
      it->second = Stored{c, BucketFor(now)};
    }
    size_.store(completions_.size(), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    wake = blocked_waiters_ != 0;
  }
  if (wake) arrived_.notify_all();
  for (AsyncWaiter& w : finished) Deliver(w);
}

uint64_t CompletionStore::TakeAsync(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                    Callback done) {
  AsyncWaiter waiter;
  waiter.tenant = tenant;
  waiter.done = std::move(done);
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_async_id_++;
    for (uint64_t ticket : tickets) {
      const Key key{tenant, ticket};
      auto it = completions_.find(key);
      if (it != completions_.end()) {
        waiter.got.push_back(it->second.completion);
        Unstore(it->second.bucket);
        completions_.erase(it);  // owed until Deliver settles it
      } else {
        std::vector<uint64_t>& waiters = async_keys_[key];
        if (std::find(waiters.begin(), waiters.end(), id) != waiters.end()) continue;  // duplicate
        waiters.push_back(id);
        ++waiter.remaining;
        waiter.waiting.push_back(ticket);
      }
    }
    size_.store(completions_.size(), std::memory_order_relaxed);
    if (waiter.remaining != 0) {
      async_.emplace(id, std::move(waiter));
      return id;
    }
    BeginDelivery(waiter);
  }
  Deliver(waiter);
  return id;
}

void CompletionStore::Expire(uint64_t id) {
  AsyncWaiter waiter;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = async_.find(id);
    if (it == async_.end()) return;
    waiter = std::move(it->second);
    async_.erase(it);
    for (uint64_t ticket : waiter.waiting) {
      auto k = async_keys_.find(Key{waiter.tenant, ticket});
      if (k == async_keys_.end()) continue;  // already delivered to this waiter
      auto pos = std::find(k->second.begin(), k->second.end(), id);
      if (pos != k->second.end()) k->second.erase(pos);
      if (k->second.empty()) async_keys_.erase(k);
    }
    BeginDelivery(waiter);
  }
  Deliver(waiter);
}

uint64_t CompletionStore::BucketFor(absl::Time now) {
  if (buckets_.empty() || now - buckets_.back().start >= bucket_width_) {
    buckets_.push_back(Bucket{now, 0});
  }
  ++buckets_.back().live;
  return first_bucket_id_ + buckets_.size() - 1;
}

void CompletionStore::Unstore(uint64_t bucket) {
  if (bucket < first_bucket_id_) return;
  --buckets_[bucket - first_bucket_id_].live;
  // Emptied old buckets go at once, so a store that is collected in time holds one or two.
  while (buckets_.size() > 1 && buckets_.front().live == 0) {
    buckets_.pop_front();
    ++first_bucket_id_;
  }
}

uint64_t CompletionStore::DropExpired(absl::Time now) {
  uint64_t dropped = 0;
  std::lock_guard<std::mutex> lock(mu_);
  // A bucket expires once its newest possible arrival is older than the time-to-live.
  while (!buckets_.empty() && buckets_.front().start + bucket_width_ + ttl_ <= now) {
    if (buckets_.front().live != 0) {
      const uint64_t id = first_bucket_id_;
      for (auto it = completions_.begin(); it != completions_.end();) {
        auto next = std::next(it);
        if (it->second.bucket == id) {
          Settle(it->first, Settled::kDropped);
          completions_.erase(it);
          ++dropped;
        }
        it = next;
      }
    }
    buckets_.pop_front();
    ++first_bucket_id_;
  }
  size_.store(completions_.size(), std::memory_order_relaxed);
  dropped_.fetch_add(dropped, std::memory_order_relaxed);
  return dropped;
}

namespace {
// The asynchronous delivery running on this thread (innermost first; a callback's Return can
// finish another waiter, whose delivery then runs inside it): what its callback handed back.
struct DeliveryScope {
  absl::flat_hash_set<CompletionStore::Key> returned;
  DeliveryScope* outer = nullptr;
};
thread_local DeliveryScope* current_delivery = nullptr;
}  // namespace

void CompletionStore::BeginDelivery(const AsyncWaiter& waiter) {
  for (const Completion& c : waiter.got) ++delivering_[Key{c.tenant, c.ticket}];
}

void CompletionStore::Deliver(AsyncWaiter& waiter) {
  std::vector<Key> keys;
  keys.reserve(waiter.got.size());
  for (const Completion& c : waiter.got) keys.push_back(Key{c.tenant, c.ticket});
  DeliveryScope scope;
  scope.outer = current_delivery;
  current_delivery = &scope;
  waiter.done(std::move(waiter.got));
  current_delivery = scope.outer;
  if (keys.empty()) return;
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Key& key : keys) {
      if (!scope.returned.contains(key)) Settle(key);  // handed back: still owed, pending again
      auto it = delivering_.find(key);
      if (it != delivering_.end() && --it->second == 0) delivering_.erase(it);
    }
    wake = delivery_watchers_ != 0;
  }
  if (wake) delivered_.notify_all();
}

void CompletionStore::Return(absl::Span<const Completion> batch) {
  if (current_delivery != nullptr) {
    // From inside a waiter's callback: those completions were never settled (still owed).
    for (const Completion& c : batch) current_delivery->returned.insert(Key{c.tenant, c.ticket});
  } else {
    // Settled already (a synchronous Take's caller handing back): owed, and pending, again.
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const Completion& c : batch) {
        const Key key{c.tenant, c.ticket};
        SettledEntry& entry = settled_[SettledIndex(key)];
        if (entry.key == key) entry = SettledEntry{};
      }
    }
    for (const Completion& c : batch) AddOwed(c.tenant, 1);
  }
  OnCompletions(batch);
}

std::optional<CompletionStore::SettledTicket> CompletionStore::FirstSettled(
    uint32_t tenant, absl::Span<const uint64_t> tickets) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto until = std::chrono::steady_clock::now() + absl::ToChronoSeconds(kDeliveryWait);
  while (true) {
    bool in_delivery = false;
    for (uint64_t ticket : tickets) {
      const Key key{tenant, ticket};
      const SettledEntry& entry = settled_[SettledIndex(key)];
      if (entry.key == key) return SettledTicket{ticket, entry.how};
      in_delivery = in_delivery || (!delivering_.empty() && delivering_.contains(key));
    }
    if (!in_delivery) return std::nullopt;
    ++delivery_watchers_;
    const bool timed_out = delivered_.wait_until(lock, until) == std::cv_status::timeout;
    --delivery_watchers_;
    if (timed_out) return std::nullopt;
  }
}

size_t CompletionStore::async_waiters() {
  std::lock_guard<std::mutex> lock(mu_);
  return async_.size();
}

size_t CompletionStore::delivery_watchers() {
  std::lock_guard<std::mutex> lock(mu_);
  return delivery_watchers_;
}

size_t CompletionStore::blocked_waiters() {
  std::lock_guard<std::mutex> lock(mu_);
  return blocked_waiters_;
}

size_t CompletionStore::handoff_waiters() {
  std::lock_guard<std::mutex> lock(mu_);
  return handoff_count_;
}

size_t CompletionStore::Collect(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                std::vector<Completion>* out, TakenFlags* taken) {
  size_t missing = 0;
  for (size_t i = 0; i < tickets.size(); ++i) {
    if ((*taken)[i]) continue;
    auto it = completions_.find(Key{tenant, tickets[i]});
    if (it == completions_.end()) {
      ++missing;
      continue;
    }
    out->push_back(it->second.completion);
    Unstore(it->second.bucket);
    completions_.erase(it);
    (*taken)[i] = true;
    Settle(Key{tenant, tickets[i]});
  }
  size_.store(completions_.size(), std::memory_order_relaxed);
  return missing;
}

bool CompletionStore::HandOff(const Key& key, const Completion& c) {
  for (uint32_t i = 0; i < handoff_count_; ++i) {
    Handoff* h = handoffs_[i];
    if (!(h->key == key)) continue;
    DropHandoff(i);
    Settle(key);
    h->completion = c;
    h->state.store(1, std::memory_order_release);  // the waiter may return (and free h) now
    return true;
  }
  return false;
}

void CompletionStore::Unregister(Handoff* h) {
  for (uint32_t i = 0; i < handoff_count_; ++i) {
    if (handoffs_[i] == h) {
      DropHandoff(i);
      return;
    }
  }
}

std::vector<Completion> CompletionStore::Take(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                              absl::Time deadline, SpinHelper help) {
  std::vector<Completion> out;
  out.reserve(tickets.size());
  TakenFlags taken(tickets.size(), false);
  // One clock read per pass (a call of tens of nanoseconds: docs/performance.md): `now` is
  // read before the first and again after each wait.
  absl::Time now = absl::Now();
  const absl::Time spin_until = std::min(deadline, now + SpinBeforeBlocking());
  // The clock is read every 64 polls: where it is not a vDSO call (some virtual machines),
  // reading it each time would add its cost to every wake-up.
  auto spin = [&](auto arrived) {
    help(arrived, spin_until);
    for (uint32_t polls = 1; !arrived(); ++polls) {
      if (polls % 64 == 0 && absl::Now() >= spin_until) return;
    }
  };
  for (;;) {
    const uint64_t seen = generation_.load(std::memory_order_acquire);
    Handoff handoff;
    bool registered = false;
    const bool may_spin = now < spin_until;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const size_t missing = Collect(tenant, tickets, &out, &taken);
      if (missing == 0) return out;
      if (missing == 1 && handoff_count_ < kMaxHandoffs && may_spin) {
        const size_t i = std::find(taken.begin(), taken.end(), false) - taken.begin();
        handoff.key = Key{tenant, tickets[i]};
        handoffs_[handoff_count_++] = &handoff;
        registered = true;
      }
    }
    if (registered) {
      spin([&] { return handoff.state.load(std::memory_order_acquire) != 0; });
      if (handoff.state.load(std::memory_order_acquire) == 0) {
        std::lock_guard<std::mutex> lock(mu_);
        Unregister(&handoff);  // unless OnCompletions took it meanwhile (state is then 1)
      }
      if (handoff.state.load(std::memory_order_acquire) != 0) {
        out.push_back(handoff.completion);
        return out;  // it was the only one missing
      }
      now = absl::Now();
      continue;  // spun out: collect again, then block
    }
    if (now >= deadline) return out;
    if (now < spin_until) {
      spin([&] { return generation_.load(std::memory_order_acquire) != seen; });
      now = absl::Now();
      continue;
    }
    BlockForBatch(seen, std::min(deadline, now + absl::Minutes(1)));
    now = absl::Now();
  }
}

void CompletionStore::BlockForBatch(uint64_t seen, absl::Time until) {
  std::unique_lock<std::mutex> lock(mu_);
  ++blocked_waiters_;
  arrived_.wait_until(lock, absl::ToChronoTime(until),
                      [&] { return generation_.load(std::memory_order_acquire) != seen; });
  --blocked_waiters_;
}

}  // namespace mk::engine::host
