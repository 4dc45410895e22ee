// CPU engine benchmark (label perf). Measures, in one run on this machine:
//   - single-slot round trip through the engine API (Publish + WaitFor), p50/p99;
//   - NOP throughput with batched publish from 1 and 2 producer threads;
//   - idle cost: CPU used by the engine's threads after 100 ms without work;
// and, in the same process, the baseline a user would write instead: the same slots handed one
// by one to a std::thread pool through a mutex + condition-variable queue, running the same
// interpreter. Prints `bench:` lines (docs/performance.md). MK_BENCH_QUICK=1: short run.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "mk/engine/engine.h"
#include "mk/engine/interpreter.h"
#include "mk/engine/opcode_registry.h"

namespace mk::engine {
namespace {

using bench::Clock;
using bench::Percentile;
using bench::Print;
using bench::Seconds;

// ---------------------------------------------------------------------------------------------
// The baseline: a mutex + condition-variable work queue feeding a std::thread pool; each task is
// one slot, executed by the same interpreter against a private control buffer.
class MutexQueuePool {
 public:
  struct Task {
    uint32_t slot[protocol::kSlotWords];
    std::atomic<uint64_t>* completed;
  };

  explicit MutexQueuePool(uint32_t threads)
      : control_(protocol::control::Layout{64, 64}.TotalWords()) {
    for (uint32_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~MutexQueuePool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void Submit(const Task& task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(task);
    }
    cv_.notify_one();
  }

 private:
  void Run() {
    protocol::ExecContext ctx;
    ctx.control = control_.data();
    ctx.layout = {64, 64};
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = queue_.front();
        queue_.pop_front();
      }
      protocol::Execute<protocol::ProductOpcodes>(task.slot, 0, ctx);
      task.completed->fetch_add(1, std::memory_order_release);
      task.completed->notify_all();
    }
  }

  std::vector<uint32_t> control_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// ---------------------------------------------------------------------------------------------

std::unique_ptr<Engine> MakeEngine() {
  EngineOptions o;
  o.backend = EngineOptions::Backend::kCpu;
  o.ring_slots = 1 << 17;
  auto e = CreateEngine(o);
  if (!e.ok() || !(*e)->Start().ok()) {
    std::fprintf(stderr, "engine start failed: %s\n", e.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(e);
}

std::vector<double> BaselineRoundTrips(MutexQueuePool& pool, int n) {
  std::vector<double> us;
  std::atomic<uint64_t> completed{0};
  MutexQueuePool::Task task{{}, &completed};
  for (int i = 0; i < n; ++i) {
    const auto start = Clock::now();
    pool.Submit(task);
    for (uint64_t seen = completed.load(); seen != static_cast<uint64_t>(i) + 1;
         seen = completed.load()) {
      completed.wait(seen);
    }
    us.push_back(Seconds(Clock::now() - start) * 1e6);
  }
  return us;
}

double BaselineThroughput(MutexQueuePool& pool, int producers, uint64_t total) {
  std::atomic<uint64_t> completed{0};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  threads.reserve(producers);
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&] {
      MutexQueuePool::Task task{{}, &completed};
      for (uint64_t i = 0; i < total / producers; ++i) pool.Submit(task);
    });
  }
  for (auto& t : threads) t.join();
  const uint64_t expect = total / producers * producers;
  for (uint64_t seen = completed.load(); seen < expect; seen = completed.load()) {
    completed.wait(seen);
  }
  return expect / Seconds(Clock::now() - start);
}

void Run() {
  const bool quick = bench::Quick();
  const int round_trips = quick ? 5000 : 50000;
  const uint64_t slots = quick ? 4'000'000 : 40'000'000;
  const uint64_t baseline_slots = quick ? 500'000 : 4'000'000;
  auto engine = MakeEngine();
  const uint32_t workers = engine->info().workers;
  std::printf("# engine_cpu: %u worker threads, %u ring slots, %u cores\n", workers,
              engine->info().ring_slots, std::thread::hardware_concurrency());

  bench::EngineRoundTrips(*engine, round_trips / 10);  // warm-up
  std::vector<double> rt = bench::EngineRoundTrips(*engine, round_trips);
  MutexQueuePool pool(workers);
  BaselineRoundTrips(pool, round_trips / 10);
  std::vector<double> base_rt = BaselineRoundTrips(pool, round_trips);
  Print("engine_cpu", "round_trip_p50", Percentile(rt, 0.5), "us");
  Print("engine_cpu", "round_trip_p99", Percentile(rt, 0.99), "us");
  Print("engine_cpu", "baseline_mutex_queue_round_trip_p50", Percentile(base_rt, 0.5), "us");
  Print("engine_cpu", "baseline_mutex_queue_round_trip_p99", Percentile(base_rt, 0.99), "us");
  Print("engine_cpu", "round_trip_ratio_vs_baseline",
        Percentile(base_rt, 0.5) / Percentile(rt, 0.5), "x");

  for (int producers : {1, 2}) {
    bench::EngineThroughput(*engine, producers, slots / 10);  // warm-up
    const double nop = bench::EngineThroughput(*engine, producers, slots);
    const double base = BaselineThroughput(pool, producers, baseline_slots);
    char figure[96];
    std::snprintf(figure, sizeof(figure), "nop_throughput_%dp", producers);
    Print("engine_cpu", figure, nop, "slots/s");
    std::snprintf(figure, sizeof(figure), "baseline_mutex_queue_throughput_%dp", producers);
    Print("engine_cpu", figure, base, "slots/s");
    std::snprintf(figure, sizeof(figure), "ratio_vs_baseline_%dp", producers);
    Print("engine_cpu", figure, nop / base, "x");
  }

  // Idle: wait 100 ms without work, then measure the process's CPU time (the benchmark thread
  // sleeps, the baseline pool is parked in its condition variable) over a window.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const double window = quick ? 0.5 : 2.0;
  const double cpu_before = bench::ProcessCpuSeconds();
  const auto wall_before = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(window));
  const double idle_cpu = bench::ProcessCpuSeconds() - cpu_before;
  Print("engine_cpu", "idle_cpu", 100.0 * idle_cpu / Seconds(Clock::now() - wall_before),
        "percent_of_one_core");
  Print("engine_cpu", "idle_parked_workers", engine->counters().parked_workers, "workers");
  (void)engine->Drain(absl::Now() + absl::Seconds(10));
}

}  // namespace
}  // namespace mk::engine

int main() {
  mk::engine::Run();
  return 0;
}
