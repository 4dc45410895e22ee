// CUDA engine benchmark (label perf; needs a GPU, prints why it skipped otherwise). Measures in
// one run on the GPU machine:
//   (a) single-slot round trip through the engine API (Publish + WaitFor), p50/p99;
//   (b) NOP throughput with batched publish from 1, 2 and 4 producer threads (batches of 1024),
//       and from one producer publishing batches of 32;
//   (c) in the same process, the baselines a user would pick instead: an empty kernel launch +
//       sync per request, a CUDA graph launch + sync per request, and a launch-per-batch
//       executor (copy in, launch the same interpreter, copy out) at batches 1, 32, 1024, 65536;
//   (d) idle: host CPU used by the whole process while the kernel polls, the kernel blocks
//       parked at the longest backoff, and the round trip of the first request after idling.
// Prints `bench:` lines and a table of ratios. MK_BENCH_QUICK=1: short run.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "cuda_baselines/launch_baselines.h"
#include "mk/engine/engine.h"

namespace mk::engine {
namespace {

using bench::Clock;
using bench::Percentile;
using bench::Print;
using bench::Seconds;

constexpr const char* kBench = "cuda_engine";

template <typename Fn>
std::vector<double> Sample(int n, Fn&& fn) {
  std::vector<double> us;
  us.reserve(n);
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<double> t = fn();
    if (!t.ok()) {
      std::fprintf(stderr, "%s\n", t.status().ToString().c_str());
      std::exit(1);
    }
    us.push_back(*t);
  }
  return us;
}

struct Row {
  std::string what;
  double engine;
  double baseline;
  std::string unit;
  double ratio;
};

int Run() {
  if (absl::Status s = BackendAvailable(EngineOptions::Backend::kCuda); !s.ok()) {
    std::printf("# %s: skipped: %s\n", kBench, std::string{s.message()}.c_str());
    const char* required = std::getenv("MK_REQUIRE_GPU");
    return required != nullptr && required[0] == '1' ? 1 : 0;
  }
  const bool quick = bench::Quick();
  const int samples = quick ? 5000 : 50000;
  const uint64_t slots = quick ? 20'000'000 : 200'000'000;
  // The baselines first: their module loads before the persistent kernel runs.
  auto baselines = ::mk::bench::LaunchBaselines::Create(65536);
  if (!baselines.ok()) {
    std::fprintf(stderr, "%s\n", baselines.status().ToString().c_str());
    return 1;
  }
  // Before the engine starts: freeing pinned memory synchronizes the device, which never
  // finishes while the persistent kernel runs.
  if (auto access = (*baselines)->ProbeHostAccess(); access.ok()) {
    for (const auto& a : *access) {
      Print(kBench, (std::string("host_write_") + a.kind).c_str(), a.write_ns_per_line,
            "ns_per_line");
      Print(kBench, (std::string("host_stream_") + a.kind).c_str(), a.stream_ns_per_line,
            "ns_per_line");
      Print(kBench, (std::string("host_read_") + a.kind).c_str(), a.read_ns_per_line,
            "ns_per_line");
    }
  }
  EngineOptions o;
  o.backend = EngineOptions::Backend::kCuda;
  o.ring_slots = 1 << 16;
  // MK_BENCH_RING_SLOTS: ring size (and so the queues' span), for measurements.
  if (const char* ring = std::getenv("MK_BENCH_RING_SLOTS"); ring != nullptr) {
    o.ring_slots = static_cast<uint32_t>(std::atoi(ring));
  }
  // MK_BENCH_WORKERS: persistent blocks (default: the engine's).
  if (const char* workers = std::getenv("MK_BENCH_WORKERS"); workers != nullptr) {
    o.workers = static_cast<uint32_t>(std::atoi(workers));
  }
  // MK_BENCH_CUDA_*: the engine's EngineOptions::cuda (docs/performance.md), for measurements.
  if (const char* v = std::getenv("MK_BENCH_CUDA_SUBMISSION_QUEUES"); v != nullptr) {
    o.cuda.submission_queues = static_cast<uint32_t>(std::atoi(v));
  }
  if (const char* v = std::getenv("MK_BENCH_CUDA_SCOUT_WARPS"); v != nullptr) {
    o.cuda.scout_warps = std::atoi(v) != 0;
  }
  if (const char* v = std::getenv("MK_BENCH_CUDA_MAX_BACKOFF_NS"); v != nullptr) {
    o.cuda.max_backoff_ns = static_cast<uint32_t>(std::atoi(v));
  }
  if (const char* v = std::getenv("MK_BENCH_CUDA_INLINE_DISPATCH"); v != nullptr) {
    o.cuda.inline_dispatch = std::atoi(v) != 0;
  }
  auto created = CreateEngine(o);
  if (!created.ok() || !(*created)->Start().ok()) {
    std::fprintf(stderr, "engine start failed: %s\n", created.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<Engine> engine = *std::move(created);
  std::printf("# %s: %s, %u ring slots, %u host cores\n", kBench, engine->info().device.c_str(),
              engine->info().ring_slots, std::thread::hardware_concurrency());
  std::fflush(stdout);
  std::vector<Row> rows;

  // MK_BENCH_PHASE=round_trip | nop_4p | batch32: runs only that workload, for a few seconds,
  // and exits: for profiling one path (perf, or a build with MK_ENABLE_PROFILING) without the other
  // phases in the figures.
  if (const char* phase = std::getenv("MK_BENCH_PHASE"); phase != nullptr) {
    const std::string name = phase;
    if (name == "round_trip") {
      std::vector<double> publish;
      std::vector<double> rt = bench::EngineRoundTrips(*engine, samples * 20, &publish);
      Print(kBench, "phase_round_trip_p50", Percentile(rt, 0.5), "us");
      Print(kBench, "phase_round_trip_publish_p50", Percentile(publish, 0.5), "us");
      // Then an idle half second and a second leg: whether a drift over the run is the
      // engine's state (it stays) or the machine's (it resets).
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      const std::vector<double> after = bench::EngineRoundTrips(*engine, samples * 6);
      rt.insert(rt.end(), after.begin(), after.end());
      for (ptrdiff_t at = 0; at + 10000 <= std::ssize(rt); at += 10000) {  // drift over a run
        std::vector<double> part(rt.begin() + at, rt.begin() + at + 10000);
        std::printf("# round trips %td..%td: p50 %.3f us\n", at, at + 10000, Percentile(part, 0.5));
      }
    } else if (name == "nop_4p") {  // ten runs in a row: whether the figure drifts over time
      for (int run = 0; run < 10; ++run) {
        double full = 0;
        const double rate = bench::EngineThroughput(*engine, 4, slots / 10, 1024, nullptr, &full);
        std::printf("# nop 4p run %d: %.3g slots/s, %.3f of the time refused as ring-full\n", run,
                    rate, full);
      }
    } else if (name == "batch32") {
      Print(kBench, "phase_nop_throughput_batch32_1p",
            bench::EngineThroughput(*engine, 1, slots, 32), "slots/s");
    } else {
      std::fprintf(stderr, "MK_BENCH_PHASE: round_trip, nop_4p or batch32, not %s\n", phase);
      return 1;
    }
    return engine->Drain(absl::Now() + absl::Seconds(30)).ok() ? 0 : 1;
  }

  // (a) Round trip.
  bench::EngineRoundTrips(*engine, samples / 10);  // warm-up
  const std::vector<double> rt = bench::EngineRoundTrips(*engine, samples);
  Sample(samples / 10, [&] { return (*baselines)->EmptyLaunchSync(); });
  const std::vector<double> launch =
      Sample(samples, [&] { return (*baselines)->EmptyLaunchSync(); });
  Sample(samples / 10, [&] { return (*baselines)->GraphLaunchSync(); });
  const std::vector<double> graph =
      Sample(samples, [&] { return (*baselines)->GraphLaunchSync(); });
  const double rt50 = Percentile(rt, 0.5), rt99 = Percentile(rt, 0.99);
  Print(kBench, "round_trip_p50", rt50, "us");
  Print(kBench, "round_trip_p99", rt99, "us");
  Print(kBench, "baseline_launch_sync_p50", Percentile(launch, 0.5), "us");
  Print(kBench, "baseline_launch_sync_p99", Percentile(launch, 0.99), "us");
  Print(kBench, "baseline_graph_launch_sync_p50", Percentile(graph, 0.5), "us");
  Print(kBench, "baseline_graph_launch_sync_p99", Percentile(graph, 0.99), "us");
  Print(kBench, "round_trip_ratio_vs_launch_sync", Percentile(launch, 0.5) / rt50, "x");
  Print(kBench, "round_trip_ratio_vs_graph_launch", Percentile(graph, 0.5) / rt50, "x");
  using SlotRead = ::mk::bench::LaunchBaselines::SlotRead;
  for (SlotRead read : {SlotRead::kNone, SlotRead::kOneThread, SlotRead::kCoalesced}) {
    auto probe = (*baselines)->MappedFlagRoundTrips(samples, read);
    if (!probe.ok()) {
      std::fprintf(stderr, "%s\n", probe.status().ToString().c_str());
      return 1;
    }
    const std::string name = read == SlotRead::kNone ? "floor_mapped_flag"
                             : read == SlotRead::kOneThread
                                 ? "floor_mapped_flag_plus_serial_slot_read"
                                 : "floor_mapped_flag_plus_slot_read";
    Print(kBench, (name + "_round_trip_p50").c_str(), Percentile(*probe, 0.5), "us");
    Print(kBench, (name + "_round_trip_p99").c_str(), Percentile(*probe, 0.99), "us");
    if (read == SlotRead::kCoalesced) {  // how the engine reads its entries
      rows.push_back({"round trip p50 vs the mapped-memory floor (flag + slot read)", rt50,
                      Percentile(*probe, 0.5), "us", Percentile(*probe, 0.5) / rt50});
    }
  }
  rows.push_back({"round trip p50 vs launch+sync", rt50, Percentile(launch, 0.5), "us",
                  Percentile(launch, 0.5) / rt50});
  rows.push_back({"round trip p50 vs graph launch+sync", rt50, Percentile(graph, 0.5), "us",
                  Percentile(graph, 0.5) / rt50});

  // (c) first, so (b)'s figures can be compared with it: launch-per-batch throughput.
  std::vector<std::pair<uint32_t, double>> per_batch;
  for (uint32_t batch : {1u, 32u, 1024u, 65536u}) {
    const int reps = batch >= 65536 ? (quick ? 50 : 500) : (quick ? 2000 : 20000);
    Sample(reps / 10, [&] { return (*baselines)->LaunchPerBatch(batch); });
    const double us =
        Percentile(Sample(reps, [&] { return (*baselines)->LaunchPerBatch(batch); }), 0.5);
    const double rate = batch / us * 1e6;
    per_batch.emplace_back(batch, rate);
    Print(kBench, ("baseline_launch_per_batch_" + std::to_string(batch) + "_p50").c_str(), us,
          "us");
    Print(kBench, ("baseline_launch_per_batch_" + std::to_string(batch) + "_throughput").c_str(),
          rate, "slots/s");
  }

  // (b) Throughput.
  bench::EngineThroughput(*engine, 1, slots / 10);  // warm-up
  double nop_1p = 0;
  for (int producers : {1, 2, 4}) {
    double publish_share = 0, full_share = 0;
    const double nop =
        bench::EngineThroughput(*engine, producers, slots, 1024, &publish_share, &full_share);
    std::printf("# %d producer(s): %.3f of their time in Publish calls refused as ring-full\n",
                producers, full_share);
    if (producers == 1) nop_1p = nop;
    Print(kBench, ("nop_throughput_" + std::to_string(producers) + "p").c_str(), nop, "slots/s");
    Print(kBench, ("publish_time_share_" + std::to_string(producers) + "p").c_str(), publish_share,
          "fraction");
    rows.push_back({"NOP throughput, " + std::to_string(producers) + " producer(s), batch 1024",
                    nop, per_batch[2].second, "slots/s", nop / per_batch[2].second});
  }
  double b32_full_share = 0;
  const double nop_b32 =
      bench::EngineThroughput(*engine, 1, slots / 10, 32, nullptr, &b32_full_share);
  std::printf("# batch 32: %.3f of the producer's time in Publish calls refused as ring-full\n",
              b32_full_share);
  Print(kBench, "nop_throughput_batch32_1p", nop_b32, "slots/s");
  Print(kBench, "ratio_batch32_vs_launch_per_batch", nop_b32 / per_batch[1].second, "x");
  Print(kBench, "ratio_batch1024_vs_launch_per_batch", nop_1p / per_batch[2].second, "x");
  rows.push_back({"NOP throughput, batch 32", nop_b32, per_batch[1].second, "slots/s",
                  nop_b32 / per_batch[1].second});
  rows.push_back({"engine batch 1024 vs launch-per-batch 65536", nop_1p, per_batch[3].second,
                  "slots/s", nop_1p / per_batch[3].second});

  // (d) Idle and wake-up.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const double window = quick ? 0.5 : 2.0;
  const double cpu_before = bench::ProcessCpuSeconds();
  const auto wall_before = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(window));
  const double idle_cpu = bench::ProcessCpuSeconds() - cpu_before;
  Print(kBench, "idle_host_cpu", 100.0 * idle_cpu / Seconds(Clock::now() - wall_before),
        "percent_of_one_core");
  Print(kBench, "idle_parked_blocks", engine->counters().parked_workers, "blocks");
  // Wake-up: after 20 ms idle (every block parked at the longest backoff, the reapers asleep),
  // the time from Publish until a block has claimed the slot (its idle flag clears, one PCIe
  // write away; a watcher thread spinning since before the Publish sees it, so the Publish
  // call's own wake-up of the sleeping reaper is not counted), and the full round trip.
  std::vector<double> wake, first_claim, publish_call;
  const uint32_t blocks = engine->info().workers;
  for (int i = 0; i < (quick ? 10 : 40); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the engine go idle
    if (engine->counters().parked_workers != blocks) continue;
    std::atomic<bool> watching{false};
    std::atomic<int64_t> claimed_ns{0};
    std::thread watcher([&] {
      watching = true;
      const auto give_up = Clock::now() + std::chrono::seconds(1);
      while (engine->counters().parked_workers == blocks && Clock::now() < give_up) {
      }
      claimed_ns = Clock::now().time_since_epoch().count();
    });
    while (!watching.load()) std::this_thread::yield();  // spinning before the Publish
    SlotPayload nop;
    const auto start = Clock::now();
    auto r = engine->Publish(0, {&nop, 1}, {});
    publish_call.push_back(Seconds(Clock::now() - start) * 1e6);
    auto done =
        engine->WaitFor(0, std::vector<uint64_t>{r->first_ticket}, absl::Now() + absl::Seconds(10));
    wake.push_back(Seconds(Clock::now() - start) * 1e6);
    watcher.join();
    first_claim.push_back((claimed_ns.load() - start.time_since_epoch().count()) /
                          1e3);  // steady_clock ns
    if (!done.ok() || done->size() != 1) return 1;
  }
  if (!first_claim.empty()) {
    Print(kBench, "wakeup_first_claim_p50", Percentile(first_claim, 0.5), "us");
    Print(kBench, "wakeup_first_claim_max", Percentile(first_claim, 1.0), "us");
    Print(kBench, "wakeup_round_trip_p50", Percentile(wake, 0.5), "us");
    std::printf(
        "# of which the Publish call itself (dispatch, doorbell, waking a reaper): p50 %.2f us\n",
        Percentile(publish_call, 0.5));
    Print(kBench, "wakeup_round_trip_max", Percentile(wake, 1.0), "us");
  }

  std::printf("\n| figure | engine | baseline | unit | ratio |\n|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    std::printf("| %s | %.4g | %.4g | %s | %.2fx |\n", r.what.c_str(), r.engine, r.baseline,
                r.unit.c_str(), r.ratio);
  }
  EngineStats stats;
  engine->Stats(&stats);
  Print(kBench, "kernel_launches", static_cast<double>(stats.executor_starts), "launches");
  auto drained = engine->Drain(absl::Now() + absl::Seconds(30));
  return drained.ok() ? 0 : 1;
}

}  // namespace
}  // namespace mk::engine

int main() { return mk::engine::Run(); }
