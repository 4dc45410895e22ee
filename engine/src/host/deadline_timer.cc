#include "host/deadline_timer.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace mk::engine::host {

DeadlineTimer::DeadlineTimer() : thread_([this] { Run(); }) {}

DeadlineTimer::~DeadlineTimer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

uint64_t DeadlineTimer::Schedule(absl::Time deadline, std::function<void()> callback) {
  uint64_t id;
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_id_++;
    queue_.emplace(std::make_pair(deadline, id), std::move(callback));
    deadline_of_[id] = deadline;
    wake = deadline + kSlack < sleeping_until_;
    if (wake) sleeping_until_ = deadline;
  }
  if (wake) changed_.notify_all();
  return id;
}

void DeadlineTimer::Cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = deadline_of_.find(id);
  if (it == deadline_of_.end()) return;
  queue_.erase(std::make_pair(it->second, id));
  deadline_of_.erase(it);
}

void DeadlineTimer::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (queue_.empty()) {
      sleeping_until_ = absl::InfiniteFuture();
      changed_.wait(lock);
      continue;
    }
    const absl::Time next = queue_.begin()->first.first;
    const absl::Time now = absl::Now();
    if (next > now) {
      // Re-armed at least every minute so a far deadline never overflows the conversion.
      sleeping_until_ = std::min(next, now + absl::Minutes(1));
      changed_.wait_until(lock, absl::ToChronoTime(sleeping_until_));
      continue;
    }
    auto node = queue_.extract(queue_.begin());
    deadline_of_.erase(node.key().second);
    lock.unlock();
    node.mapped()();
    lock.lock();
  }
}

}  // namespace mk::engine::host
