// The watchdog: samples engine progress every `interval`. Progress is measured per slot and
// per byte: any slot reaching a terminal outcome, a DONE_COUNT change, or resource io (bytes
// read as they land, bytes hashed on the host), so a long batch of CHECKSUMs or one cold load
// of a large file is progress, not a stall. Work in flight (excluding slots parked for disabled
// tenants) with no progress for `stall_intervals` consecutive samples marks the engine stalled: the
// stalled metric, health NOT_SERVING, a log line, and, when `recover` is set, Engine::Restart
// (in-flight slots fail with FAULT ENGINE_RESTART), after which health returns to SERVING.
//
// Threads: one owned sampling thread; state() is safe from any thread (the metrics collector).
// Lifetime: Stop ends the thread early (a drain); the object itself must outlive every reader
// of state().
#ifndef MK_SERVER_SRC_WATCHDOG_H_
#define MK_SERVER_SRC_WATCHDOG_H_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/time/time.h"
#include "mk/engine/engine.h"
#include "mk/server/server.h"

namespace mk::server {

class Watchdog {
 public:
  struct State {
    bool stalled = false;
    double last_progress_age_seconds = 0;
    uint64_t stalls = 0;
  };

  Watchdog(engine::Engine* engine, const WatchdogOptions& options,
           std::function<void(bool healthy)> set_healthy);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  State state() const;
  // Ends sampling (no restart after this returns); state() keeps answering with the last
  // state, so the metrics collector may keep reading the watchdog until it is destroyed.
  void Stop();

 private:
  void Run();
  void Sample();

  engine::Engine* const engine_;
  const WatchdogOptions options_;
  const std::function<void(bool)> set_healthy_;
  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;  // guarded by mu_
  State state_;        // guarded by mu_
  // What the last sample saw (sampling thread only).
  struct Progress {
    uint32_t done_count = 0;
    uint64_t terminal = 0;  // done + faulted + cancelled
    uint64_t io_bytes = 0;
    friend bool operator==(const Progress&, const Progress&) = default;
  };
  static Progress ProgressOf(const engine::EngineCounters& c) {
    return Progress{c.done_count, c.done + c.faulted + c.cancelled, c.io_progress_bytes};
  }
  Progress last_progress_seen_;
  int idle_samples_ = 0;                    // sampling thread only
  absl::Time last_progress_ = absl::Now();  // guarded by mu_
  std::mutex join_mu_;  // one joiner of thread_ (Stop may race with the destructor's)
  std::thread thread_;
};

}  // namespace mk::server

#endif  // MK_SERVER_SRC_WATCHDOG_H_
