#include "watchdog.h"

#include "mk/base/log.h"

namespace mk::server {

Watchdog::Watchdog(engine::Engine* engine, const WatchdogOptions& options,
                   std::function<void(bool)> set_healthy)
    : engine_(engine), options_(options), set_healthy_(std::move(set_healthy)) {
  last_progress_seen_ = ProgressOf(engine_->counters());
  thread_ = std::thread([this] { Run(); });
}

Watchdog::~Watchdog() { Stop(); }

void Watchdog::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  std::lock_guard<std::mutex> join_lock(join_mu_);
  if (thread_.joinable()) thread_.join();
}

Watchdog::State Watchdog::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  State s = state_;
  s.last_progress_age_seconds = absl::ToDoubleSeconds(absl::Now() - last_progress_);
  return s;
}

void Watchdog::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_cv_.wait_for(lock, absl::ToChronoNanoseconds(options_.interval),
                            [this] { return stop_; })) {
    lock.unlock();
    Sample();
    lock.lock();
  }
}

void Watchdog::Sample() {
  const engine::EngineCounters c = engine_->counters();
  const uint64_t waiting_work = c.in_flight > c.parked_slots ? c.in_flight - c.parked_slots : 0;
  const Progress now = ProgressOf(c);
  const bool progressed = !(now == last_progress_seen_);  // wrap-safe: any change is progress
  last_progress_seen_ = now;
  if (progressed || waiting_work == 0) {
    idle_samples_ = 0;
    // Health changes before the reported state does, so whoever sees the state change (the
    // metrics, a test) also sees the health that goes with it. Only this thread writes either.
    bool recovered;
    {
      std::lock_guard<std::mutex> lock(mu_);
      recovered = state_.stalled;  // (without `recover`) the engine moved again by itself
    }
    if (recovered) set_healthy_(true);
    std::lock_guard<std::mutex> lock(mu_);
    last_progress_ = absl::Now();
    state_.stalled = false;
    return;
  }
  if (++idle_samples_ < options_.stall_intervals) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_.stalled) return;
  }
  set_healthy_(false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_.stalled = true;
    ++state_.stalls;
  }
  base::LogError("megakerneld: watchdog: engine stalled: ", waiting_work,
                 " slots waiting, no progress for ", idle_samples_, " samples of ",
                 absl::FormatDuration(options_.interval), "; health NOT_SERVING",
                 options_.recover ? ", restarting the engine" : "");
  if (!options_.recover) return;
  const absl::Status restarted = engine_->Restart();
  if (restarted.ok()) {
    base::LogWarning(
        "megakerneld: watchdog: engine restarted; in-flight slots failed with "
        "FAULT ENGINE_RESTART");
  } else {
    base::LogError("megakerneld: watchdog: engine restart failed: ", restarted.ToString());
  }
  if (!restarted.ok()) return;
  idle_samples_ = 0;
  last_progress_seen_ = ProgressOf(engine_->counters());
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_.stalled = false;
    last_progress_ = absl::Now();
  }
  set_healthy_(true);
}

}  // namespace mk::server
