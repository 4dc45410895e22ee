// Helpers shared by the benchmarks: `bench:` output (docs/performance.md), MK_BENCH_QUICK,
// percentiles, process CPU time, and the engine round-trip / throughput drivers that the CPU
// and CUDA benchmarks both measure through the Engine API.
#ifndef MK_TESTS_BENCH_BENCH_UTIL_H_
#define MK_TESTS_BENCH_BENCH_UTIL_H_

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "mk/engine/engine.h"

namespace mk::engine::bench {

using Clock = std::chrono::steady_clock;

inline bool Quick() {
  const char* q = std::getenv("MK_BENCH_QUICK");
  return q != nullptr && q[0] == '1';
}

inline void Print(const char* bench, const char* figure, double value, const char* unit) {
  std::printf("bench: %s %s %.4g %s\n", bench, figure, value, unit);
  std::fflush(stdout);
}

inline double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

inline double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

class CountingSink final : public CompletionSink {
 public:
  void OnCompletions(absl::Span<const Completion> batch) override {
    count_.fetch_add(batch.size(), std::memory_order_release);
  }
  uint64_t count() const { return count_.load(std::memory_order_acquire); }

 private:
  std::atomic<uint64_t> count_{0};
};

// Publish + WaitFor of one NOP, `n` times; microseconds each.
// `publish_us` (optional): the part of each round trip spent in Publish.
inline std::vector<double> EngineRoundTrips(Engine& engine, int n,
                                            std::vector<double>* publish_us = nullptr) {
  std::vector<double> us;
  SlotPayload nop;
  const absl::Time deadline = absl::Now() + absl::Minutes(10);  // for the whole run
  for (int i = 0; i < n; ++i) {
    const auto start = Clock::now();
    auto r = engine.Publish(0, {&nop, 1}, {});
    if (publish_us != nullptr) publish_us->push_back(Seconds(Clock::now() - start) * 1e6);
    auto done = engine.WaitFor(0, {&r->first_ticket, 1}, deadline);
    us.push_back(Seconds(Clock::now() - start) * 1e6);
    if (!done.ok() || done->size() != 1) std::abort();
  }
  return us;
}

// `producers` threads publish `total` NOPs in batches of `batch_size` with a counting sink;
// returns completed slots per second. `publish_share` (optional): the fraction of the run the
// producers spent inside Publish (near 1: the producers are the bottleneck).
// `publish_share`: the producers' time inside Publish; `full_share`: the part of it in calls the
// ring refused as full (the consumers are the bottleneck when it dominates).
inline double EngineThroughput(Engine& engine, int producers, uint64_t total,
                               uint32_t batch_size = 1024, double* publish_share = nullptr,
                               double* full_share = nullptr) {
  std::atomic<int64_t> publish_ns{0};
  std::atomic<int64_t> full_ns{0};
  CountingSink sink;
  const uint32_t kBatch = batch_size;
  std::vector<SlotPayload> batch(kBatch);
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  threads.reserve(producers);
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&] {
      int64_t inside = 0, refused = 0;
      for (uint64_t sent = 0; sent < total / producers;) {
        const auto before = Clock::now();
        const bool ok = engine.Publish(0, batch, {&sink}).ok();
        const int64_t ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - before).count();
        inside += ns;
        if (ok) {
          sent += kBatch;
        } else {
          refused += ns;
          std::this_thread::yield();  // ring full: backpressure
        }
      }
      publish_ns.fetch_add(inside);
      full_ns.fetch_add(refused);
    });
  }
  for (auto& t : threads) t.join();
  const uint64_t expect =
      (total / producers / kBatch + (total / producers % kBatch != 0)) * kBatch * producers;
  while (sink.count() < expect) std::this_thread::yield();
  const double seconds = Seconds(Clock::now() - start);
  if (publish_share != nullptr) *publish_share = publish_ns.load() * 1e-9 / producers / seconds;
  if (full_share != nullptr) *full_share = full_ns.load() * 1e-9 / producers / seconds;
  return expect / seconds;
}

inline double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

}  // namespace mk::engine::bench

#endif  // MK_TESTS_BENCH_BENCH_UTIL_H_
