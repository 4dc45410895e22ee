// Tenancy benchmark (label perf): what one tenant flooding the NORMAL partition does to another
// tenant's one-slot round trips, with the fair-share rule on (the product) and off (before it),
// measured in one run on this machine. `tenancy_bench [cpu|cuda|auto]` (default cpu).
//
// For 1 and 3 flooding tenants (threads publishing 256-slot NOP batches with a counting sink as
// fast as the engine takes them, retrying when refused) a victim tenant does one-slot round
// trips (Publish + WaitFor; a refused publish is retried and the retries count in its time).
// Printed: the victim's p50/p99 alone (the baseline) and under the flood, how often its publish
// was refused, the flood's throughput, and the stated bound: an admitted slot waits behind at
// most H slots of its partition (H = 15/16 of it), so the victim's queueing is at most
// H / throughput. A third configuration lowers H to a quarter of the partition
// (max_tenant_partition_share). MK_BENCH_QUICK=1: short run.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "mk/engine/engine.h"

namespace mk::engine {
namespace {

using bench::Clock;
using bench::Percentile;
using bench::Seconds;

constexpr uint32_t kVictim = 1;
constexpr uint32_t kRingSlots = 1 << 16;  // NORMAL: 32768 slots

class CountingSink final : public CompletionSink {
 public:
  void OnCompletions(absl::Span<const Completion> batch) override {
    count.fetch_add(batch.size(), std::memory_order_relaxed);
  }
  std::atomic<uint64_t> count{0};
};

std::unique_ptr<Engine> MakeEngine(EngineOptions::Backend backend, bool fair_share,
                                   double max_share = 15.0 / 16.0) {
  EngineOptions o;
  o.backend = backend;
  o.ring_slots = kRingSlots;
  o.max_tenants = 8;
  o.fair_share = fair_share;
  o.max_tenant_partition_share = max_share;
  auto e = CreateEngine(o);
  if (!e.ok() || !(*e)->Start().ok()) {
    std::fprintf(stderr, "engine start failed: %s\n", e.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(e);
}

struct VictimResult {
  std::vector<double> us;
  uint64_t refused = 0;
  double flood_slots_per_s = 0;
};

// The victim's round trips while `flooders` tenants (2, 3, ...) publish as fast as they can.
VictimResult Measure(Engine& engine, int flooders, int round_trips) {
  CountingSink sink;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  threads.reserve(flooders);
  for (int f = 0; f < flooders; ++f) {
    threads.emplace_back([&, tenant = static_cast<uint32_t>(2 + f)] {
      const std::vector<SlotPayload> batch(256);
      while (!stop.load(std::memory_order_relaxed)) {
        if (!engine.Publish(tenant, batch, {&sink}).ok()) std::this_thread::yield();
      }
    });
  }
  // Let the flood fill the partition first.
  while (flooders != 0 && sink.count.load() < kRingSlots) std::this_thread::yield();
  VictimResult r;
  const uint64_t flood_before = sink.count.load();
  const auto flood_start = Clock::now();
  SlotPayload nop;
  const absl::Time deadline = absl::Now() + absl::Minutes(10);
  for (int i = 0; i < round_trips; ++i) {
    const auto start = Clock::now();
    absl::StatusOr<PublishResult> p = engine.Publish(kVictim, {&nop, 1}, {});
    while (!p.ok()) {
      if (p.status().code() != absl::StatusCode::kResourceExhausted) std::abort();
      ++r.refused;
      std::this_thread::yield();
      p = engine.Publish(kVictim, {&nop, 1}, {});
    }
    auto done = engine.WaitFor(kVictim, {&p->first_ticket, 1}, deadline);
    if (!done.ok() || done->size() != 1) std::abort();
    r.us.push_back(Seconds(Clock::now() - start) * 1e6);
  }
  r.flood_slots_per_s =
      static_cast<double>(sink.count.load() - flood_before) / Seconds(Clock::now() - flood_start);
  stop.store(true);
  for (auto& t : threads) t.join();
  (void)engine.Drain(absl::Now() + absl::Seconds(30));
  return r;
}

void Run(EngineOptions::Backend backend) {
  const int round_trips = bench::Quick() ? 2000 : 20000;
  constexpr uint32_t kNormalSlots = kRingSlots / 2;
  constexpr uint32_t kMaxHoldSlots = kNormalSlots - kNormalSlots / 16;  // 15/16 of NORMAL
  constexpr auto kMaxHold = static_cast<double>(kMaxHoldSlots);
  std::printf("# tenancy: %u ring slots (NORMAL %u, one tenant holds <= %.0f), %u cores\n",
              kRingSlots, kRingSlots / 2, kMaxHold, std::thread::hardware_concurrency());
  double alone_p50 = 0, alone_p99 = 0;
  {
    auto engine = MakeEngine(backend, true);
    Measure(*engine, 0, round_trips / 10);  // warm-up
  }
  {
    auto engine = MakeEngine(backend, true);
    VictimResult alone = Measure(*engine, 0, round_trips);
    alone_p50 = Percentile(alone.us, 0.5);
    alone_p99 = Percentile(alone.us, 0.99);
    bench::Print("tenancy", "victim_alone_p50", alone_p50, "us");
    bench::Print("tenancy", "victim_alone_p99", alone_p99, "us");
  }
  struct Config {
    const char* name;
    bool fair;
    double share;
  };
  for (int flooders : {1, 3}) {
    for (const Config& c : {Config{"unfair", false, 1.0}, Config{"fair", true, 15.0 / 16.0},
                            Config{"fair_share_quarter", true, 0.25}}) {
      auto engine = MakeEngine(backend, c.fair, c.share);
      VictimResult r = Measure(*engine, flooders, round_trips);
      const double max_hold =
          c.fair ? std::min(kMaxHold, kNormalSlots * c.share) : static_cast<double>(kNormalSlots);
      char prefix[64];
      std::snprintf(prefix, sizeof(prefix), "%s_%dflooders", c.name, flooders);
      auto print = [&](const char* what, double value, const char* unit) {
        char figure[128];
        std::snprintf(figure, sizeof(figure), "%s_%s", prefix, what);
        bench::Print("tenancy", figure, value, unit);
      };
      const double p99 = Percentile(r.us, 0.99);
      print("victim_p50", Percentile(r.us, 0.5), "us");
      print("victim_p99", p99, "us");
      print("victim_p99_ratio_vs_alone", p99 / alone_p99, "x");
      print("victim_refused_per_publish", static_cast<double>(r.refused) / round_trips, "ratio");
      print("flood_throughput", r.flood_slots_per_s, "slots/s");
      const double bound_us = max_hold / r.flood_slots_per_s * 1e6;
      print("stated_bound_queueing", bound_us, "us");
      print("victim_p99_within_bound", p99 <= bound_us + alone_p99 ? 1 : 0, "bool");
    }
  }
}

}  // namespace
}  // namespace mk::engine

int main(int argc, char** argv) {
  using Backend = mk::engine::EngineOptions::Backend;
  Backend backend = Backend::kCpu;
  if (argc > 1 && std::strcmp(argv[1], "cuda") == 0) backend = Backend::kCuda;
  if (argc > 1 && std::strcmp(argv[1], "auto") == 0) backend = Backend::kAuto;
  mk::engine::Run(backend);
  return 0;
}
