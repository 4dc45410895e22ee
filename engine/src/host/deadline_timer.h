// DeadlineTimer: runs callbacks at deadlines on one owned thread. Used for the expiry of
// asynchronous waits (Engine::WaitForAsync) so no caller thread ever blocks.
//
// Thread safety: Schedule and Cancel may be called from any thread, also from a callback.
// Callbacks run on the timer thread, one at a time, without the timer's lock held; they must not
// block. Destruction joins the thread; callbacks still scheduled then are dropped.
#ifndef MK_ENGINE_SRC_HOST_DEADLINE_TIMER_H_
#define MK_ENGINE_SRC_HOST_DEADLINE_TIMER_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace mk::engine::host {

class DeadlineTimer {
 public:
  DeadlineTimer();
  ~DeadlineTimer();
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  // Callbacks run at most this long after their deadline.
  static constexpr absl::Duration kSlack = absl::Milliseconds(2);

  // Returns an id for Cancel. A deadline in the past runs the callback promptly.
  uint64_t Schedule(absl::Time deadline, std::function<void()> callback);
  // Removes a scheduled callback; no effect if it already ran.
  void Cancel(uint64_t id);

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable changed_;
  // Ordered by (deadline, id); guarded by mu_.
  std::map<std::pair<absl::Time, uint64_t>, std::function<void()>> queue_;
  absl::flat_hash_map<uint64_t, absl::Time> deadline_of_;  // guarded by mu_
  uint64_t next_id_ = 1;                                   // guarded by mu_
  bool stop_ = false;                                      // guarded by mu_
  // When the thread next wakes by itself; guarded by mu_. A new deadline wakes the thread only
  // if it falls more than kSlack before this, so a stream of waits costs no wake-ups.
  absl::Time sleeping_until_ = absl::InfiniteFuture();
  std::thread thread_;
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_DEADLINE_TIMER_H_
