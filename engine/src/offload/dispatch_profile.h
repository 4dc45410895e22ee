// DispatchProfile: where an offload engine's time goes, for performance work: time per dispatch
// and per dispatched slot, per reap pass and reaped slot, and for one-slot round trips the
// split between claiming, the doorbell, the device (doorbell to record seen) and delivery.
// Printed to the log when the engine is destroyed, and every 10000 one-slot round trips (so a
// drift over a run shows).
//
// It exists only in builds configured with -DMK_ENABLE_PROFILING=ON (compile definition
// MK_PROFILING=1). Otherwise it is an empty class whose inline methods do nothing and whose
// Now() reads no clock: nothing of it remains on the hot paths. docs/performance.md says how to
// build and read it.
//
// Thread safety: every method may be called from any thread (relaxed atomics).
#ifndef MK_ENGINE_SRC_OFFLOAD_DISPATCH_PROFILE_H_
#define MK_ENGINE_SRC_OFFLOAD_DISPATCH_PROFILE_H_

#include <chrono>
#include <cstdint>

#ifndef MK_PROFILING
#define MK_PROFILING 0
#endif

#if MK_PROFILING
#include <atomic>
#include <mutex>

#include "offload/kernel_abi.h"
#endif

namespace mk::engine::offload {

// The clock of every profile (this one and DeviceResidency's copy profile): steady_clock in
// profiling builds; otherwise a Time with nothing in it and a Now() that reads no clock.
#if MK_PROFILING
struct ProfileClock {
  using Time = std::chrono::steady_clock::time_point;
  static Time Now() { return std::chrono::steady_clock::now(); }
};
#else
struct ProfileClock {
  struct Time {};
  static Time Now() { return {}; }
};
#endif

#if MK_PROFILING

class DispatchProfile {
 public:
  using Time = ProfileClock::Time;

  ~DispatchProfile() { Print(/*window=*/false); }
  // A dispatch of `slots` into `shard`: entered at `started`, entries written at `claimed`,
  // doorbell rung and reaper woken at `done`.
  void OnDispatch(uint32_t shard, uint64_t slots, Time started, Time claimed, Time done);
  // A reap pass of `shard` that consumed `records`, the first read at `seen`.
  void OnReapPass(uint32_t shard, uint64_t records, Time seen);

 private:
  // The one-slot figures, totals since the start.
  struct OneSlot {
    uint64_t calls = 0, claim_ns = 0, tail_ns = 0, reaps = 0, device_ns = 0, deliver_ns = 0;
  };
  OneSlot LoadOneSlot() const;
  // Logs the averages since the start, or (window) the one-slot figures since the last window.
  void Print(bool window);

  std::atomic<uint64_t> dispatch_ns_{0}, dispatch_calls_{0}, dispatched_slots_{0};
  std::atomic<uint64_t> single_calls_{0}, single_claim_ns_{0}, single_tail_ns_{0};
  std::atomic<uint64_t> single_reaps_{0}, single_device_ns_{0}, single_deliver_ns_{0};
  std::atomic<uint64_t> reap_passes_{0}, reaped_slots_{0}, reap_ns_{0};
  std::atomic<int64_t> doorbell_ns_[kMaxShards] = {};  // when a one-slot dispatch rang, per shard
  std::mutex window_mu_;
  OneSlot window_;  // the totals when the last window was printed; guarded by window_mu_
};

#else

class DispatchProfile {
 public:
  using Time = ProfileClock::Time;
  void OnDispatch(uint32_t, uint64_t, Time, Time, Time) {}
  void OnReapPass(uint32_t, uint64_t, Time) {}
};

#endif

}  // namespace mk::engine::offload

#endif  // MK_ENGINE_SRC_OFFLOAD_DISPATCH_PROFILE_H_
