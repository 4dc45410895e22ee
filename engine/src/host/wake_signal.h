// WakeSignal: where idle executor threads sleep (a futex through std::atomic::wait) until work
// arrives, without a lost wake-up. Shared by the CPU engine's workers and the CUDA engine's
// reapers.
//
// The protocol: a sleeper registers (counted in sleepers()) and reads the epoch before it
// re-checks for work; a waker makes the work visible, bumps the epoch, then looks for sleepers.
// Either the sleeper's re-check sees the work, or the bumped epoch ends its wait at once.
// All operations are sequentially consistent; every method may be called from any thread.
#ifndef MK_ENGINE_SRC_HOST_WAKE_SIGNAL_H_
#define MK_ENGINE_SRC_HOST_WAKE_SIGNAL_H_

#include <atomic>
#include <cstdint>

namespace mk::engine::host {

class WakeSignal {
 public:
  // Sleeps until a Wake, unless `has_work()` holds when re-checked. `registered()` runs once
  // this thread counts as a sleeper, before the re-check (the CPU engine stops counting the
  // thread as a spinner there, so a waker that skipped it for being a spinner still wakes it).
  template <typename HasWork, typename Registered>
  void Sleep(HasWork has_work, Registered registered) {
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    registered();
    const uint32_t epoch = epoch_.load(std::memory_order_seq_cst);
    if (!has_work()) epoch_.wait(epoch, std::memory_order_seq_cst);
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }
  template <typename HasWork>
  void Sleep(HasWork has_work) {
    Sleep(has_work, [] {});
  }

  // Ends the current sleeps' epoch; call after the work is visible, before NotifySleepers.
  void Bump() { epoch_.fetch_add(1, std::memory_order_seq_cst); }
  // Wakes one sleeper or all of them, if any sleeps (no system call otherwise).
  void NotifySleepers(bool all) {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    if (all) {
      epoch_.notify_all();
    } else {
      epoch_.notify_one();
    }
  }
  void Wake(bool all) {
    Bump();
    NotifySleepers(all);
  }

  uint32_t sleepers() const { return sleepers_.load(std::memory_order_acquire); }

 private:
  std::atomic<uint32_t> epoch_{0};
  std::atomic<uint32_t> sleepers_{0};
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_WAKE_SIGNAL_H_
