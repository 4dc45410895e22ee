#include "offload/dispatch_profile.h"

#if MK_PROFILING

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "mk/base/log.h"

namespace mk::engine::offload {

namespace {

int64_t Ns(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}
// total / count (0 when nothing was counted), scaled.
double Mean(uint64_t total, uint64_t count, double scale) {
  return total / std::max(1.0, static_cast<double>(count)) * scale;
}

}  // namespace

void DispatchProfile::OnDispatch(uint32_t shard, uint64_t slots, Time started, Time claimed,
                                 Time done) {
  dispatched_slots_.fetch_add(slots, std::memory_order_relaxed);
  dispatch_calls_.fetch_add(1, std::memory_order_relaxed);
  dispatch_ns_.fetch_add(Ns(done - started), std::memory_order_relaxed);
  if (slots != 1) return;
  doorbell_ns_[shard].store(Ns(claimed.time_since_epoch()), std::memory_order_relaxed);
  single_calls_.fetch_add(1, std::memory_order_relaxed);
  single_claim_ns_.fetch_add(Ns(claimed - started), std::memory_order_relaxed);
  single_tail_ns_.fetch_add(Ns(done - claimed), std::memory_order_relaxed);
}

void DispatchProfile::OnReapPass(uint32_t shard, uint64_t records, Time seen) {
  reap_passes_.fetch_add(1, std::memory_order_relaxed);
  reaped_slots_.fetch_add(records, std::memory_order_relaxed);
  const int64_t deliver_ns = Ns(ProfileClock::Now() - seen);
  reap_ns_.fetch_add(deliver_ns, std::memory_order_relaxed);
  const int64_t rang = doorbell_ns_[shard].exchange(0, std::memory_order_relaxed);
  if (records != 1 || rang == 0) return;
  const int64_t seen_ns = Ns(seen.time_since_epoch());
  // Means without the outliers (wake-ups from idle, preemption), which would hide the path.
  constexpr int64_t kOutlierNs = 30'000;
  if (seen_ns - rang > kOutlierNs || deliver_ns > kOutlierNs) return;
  single_device_ns_.fetch_add(seen_ns - rang, std::memory_order_relaxed);
  single_deliver_ns_.fetch_add(deliver_ns, std::memory_order_relaxed);
  // Every 10000th: the figures since the last window, so a drift over a run shows.
  if (single_reaps_.fetch_add(1, std::memory_order_acq_rel) % 10000 == 9999) Print(true);
}

DispatchProfile::OneSlot DispatchProfile::LoadOneSlot() const {
  return OneSlot{single_calls_.load(), single_claim_ns_.load(),  single_tail_ns_.load(),
                 single_reaps_.load(), single_device_ns_.load(), single_deliver_ns_.load()};
}

void DispatchProfile::Print(bool window) {
  const OneSlot now = LoadOneSlot();
  OneSlot since;  // zero: since the start
  if (window) {
    std::lock_guard<std::mutex> lock(window_mu_);
    since = std::exchange(window_, now);
  } else {
    base::LogInfo(absl::StrFormat(
        "offload profile: %u dispatches, %.3f us each, %.1f ns per dispatched slot; %u reap "
        "passes, %.1f slots each, %.1f ns per reaped slot",
        dispatch_calls_.load(), Mean(dispatch_ns_.load(), dispatch_calls_.load(), 1e-3),
        Mean(dispatch_ns_.load(), dispatched_slots_.load(), 1), reap_passes_.load(),
        Mean(reaped_slots_.load(), reap_passes_.load(), 1),
        Mean(reap_ns_.load(), reaped_slots_.load(), 1)));
  }
  const uint64_t calls = now.calls - since.calls;
  const uint64_t reaps = now.reaps - since.reaps;
  base::LogInfo(absl::StrFormat(
      "offload profile%s: %u one-slot dispatches: claim+entry %.3f us, tail+wake %.3f us; %u "
      "one-slot reaps under 30 us: doorbell -> record seen %.3f us, seen -> delivered %.3f us",
      window ? " (window)" : "", calls, Mean(now.claim_ns - since.claim_ns, calls, 1e-3),
      Mean(now.tail_ns - since.tail_ns, calls, 1e-3), reaps,
      Mean(now.device_ns - since.device_ns, reaps, 1e-3),
      Mean(now.deliver_ns - since.deliver_ns, reaps, 1e-3)));
}

}  // namespace mk::engine::offload

#endif  // MK_PROFILING
