// io benchmark (label perf): the resource loader's reader against fio on the same files, in the
// same run, with the same block size and queue depth, both with O_DIRECT (the page cache would
// otherwise measure memory copies, not the device). Prints both bandwidths and the ratio.
// Then the whole path through the engine (--engine=auto: the CUDA engine on a GPU machine):
// every file registered as a resource and made resident by LOAD_MISS (O_DIRECT reads, resident
// copies in device memory on the CUDA engine), against min(fio, pinned host-to-device copy
// bandwidth) measured in the same run; and the LOAD_MISS round trip of a 64 KiB resource.
// `#` lines explain the round trip: on a GPU, a 64 KiB copy-engine copy with and without the
// persistent kernel running, the engine's NOP round trip, the io request's share, and the
// reader alone.
// Files: 64 x 16 MiB (MK_BENCH_QUICK=1: 8 x 16 MiB), laid out by fio itself.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "mk/engine/engine.h"
#include "mk/io/file_reader.h"
#if MK_HAVE_CUDA
#include "cuda_baselines/launch_baselines.h"
#endif

namespace {

using mk::engine::bench::Clock;
using mk::engine::bench::Percentile;
using mk::engine::bench::Quick;
namespace fs = std::filesystem;

constexpr const char* kBench = "io";

constexpr uint32_t kBlock = 1 << 20;
constexpr uint32_t kQueueDepth = 32;
constexpr uint64_t kFileBytes = 16ull << 20;

void Print(const char* figure, double value, const char* unit) {
  mk::engine::bench::Print(kBench, figure, value, unit);
}

std::string Run(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
  if (pclose(p) != 0) {
    std::fprintf(stderr, "command failed: %s\n%s\n", command.c_str(), out.c_str());
    std::exit(1);
  }
  return out;
}

std::string FioCommand(const std::string& dir, int files, const char* extra) {
  return "fio --name=seqread --directory=" + dir + " --nrfiles=" + std::to_string(files) +
         " --filesize=16M --size=" + std::to_string(files * 16) +
         "M --rw=read --bs=1M --iodepth=" + std::to_string(kQueueDepth) +
         " --ioengine=io_uring --direct=1 --file_service_type=sequential "
         "--output-format=terse --terse-version=3 " +
         extra;
}

// Terse v3: field 7 (1-based) is the read bandwidth in KiB/s.
double FioReadBandwidth(const std::string& terse) {
  size_t pos = 0;
  for (int field = 1; field < 7; ++field) pos = terse.find(';', pos) + 1;
  return std::strtod(terse.c_str() + pos, nullptr) * 1024.0;
}

// Bytes per second reading every file into host memory through the reader (at most 4 files in
// flight, each split into chunks by the reader); 0 when a read failed.
double LoaderBandwidth(mk::io::FileReader& reader, const std::vector<std::string>& paths) {
  // Reused: the bytes land in host memory. Page aligned like fio's buffers, so O_DIRECT reads
  // can land there directly.
  std::unique_ptr<char, decltype(&std::free)> dest(
      static_cast<char*>(std::aligned_alloc(4096, kFileBytes * 4)), &std::free);
  std::mutex mu;
  std::condition_variable cv;
  size_t completed = 0;
  bool failed = false;
  const auto start = Clock::now();
  for (size_t i = 0; i < paths.size(); ++i) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return i - completed < 4; });
    }
    char* slot = dest.get() + (i % 4) * kFileBytes;
    absl::Status s =
        reader.Read(paths[i], 0, kFileBytes, slot, [&](const absl::Status& st, uint64_t) {
          std::lock_guard<std::mutex> lock(mu);
          failed |= !st.ok();
          ++completed;
          cv.notify_all();
        });
    if (!s.ok()) return 0;
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return completed == paths.size(); });
  if (failed) return 0;
  return paths.size() * kFileBytes / std::chrono::duration<double>(Clock::now() - start).count();
}

// `dir` is tenant 0's folder of a resource root (<root>/tenants/0): the engine's root is two
// levels up.
std::unique_ptr<mk::engine::Engine> StartEngine(const fs::path& dir, bool direct, uint64_t budget) {
  mk::engine::EngineOptions o;
  o.backend = mk::engine::EngineOptions::Backend::kAuto;
  o.resource_root = dir.parent_path().parent_path().string();
  o.tenant_residency_bytes = 0;    // the one tenant may use the whole budget
  o.max_resources_per_tenant = 0;  // the round trip registers thousands of ids
  o.io_direct = direct;
  o.residency_budget_bytes = budget;
  auto engine = mk::engine::CreateEngine(o);
  if (!engine.ok() || !(*engine)->Start().ok()) {
    std::fprintf(stderr, "engine: %s\n", engine.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(engine);
}

// Every file made resident through the engine: registered, then one LOAD_MISS each in one
// publish; bytes per second from the publish to the last completion.
double EngineLoadBandwidth(const fs::path& dir, const std::vector<std::string>& paths) {
  auto engine = StartEngine(dir, /*direct=*/true, (paths.size() + 4) * kFileBytes);
  std::vector<mk::engine::SlotPayload> misses;
  for (const std::string& path : paths) {
    mk::engine::SlotPayload miss;
    miss.opcode = mk::protocol::opcode::kLoadMiss;
    miss.args[0] = *engine->RegisterResource(0, fs::path(path).filename().string(), 0, 0);
    misses.push_back(miss);
  }
  const auto start = Clock::now();
  auto r = engine->Publish(0, misses, {});
  std::vector<uint64_t> tickets;
  for (size_t i = 0; i < misses.size(); ++i) tickets.push_back(r->first_ticket + i);
  auto done = engine->WaitFor(0, tickets, absl::Now() + absl::Seconds(120));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  size_t ok = 0;
  for (const auto& c : done.ok() ? *done : std::vector<mk::engine::Completion>{}) {
    ok += c.status == mk::engine::CompletionStatus::kDone;
  }
  if (ok != paths.size()) {
    std::fprintf(stderr, "engine loads: %zu of %zu done\n", ok, paths.size());
    std::exit(1);
  }
  static bool described = false;
  if (!described) {
    described = true;
    std::printf("# engine loads: %s engine, %zu resources resident\n",
                engine->info().backend.c_str(), ok);
  }
  return paths.size() * kFileBytes / seconds;
}

// LOAD_MISS round trip through the engine for a page-cached 64 KiB resource: the same file
// registered under fresh ids, so every miss really reads. Baseline: pread of the same bytes.
void LoadMissRoundTrip(const fs::path& dir, int n) {
  const std::string file = (dir / "resource64k.bin").string();
  {
    std::FILE* f = std::fopen(file.c_str(), "wb");
    std::vector<char> bytes(65536, 'r');
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
#if MK_HAVE_CUDA
  // What the copy of a 64 KiB resource costs, without and with the engine's kernel running.
  // Declared before the engine: released after it stopped.
  std::unique_ptr<mk::bench::CopyLatencyProbe> probe;
  if (mk::engine::BackendAvailable(mk::engine::EngineOptions::Backend::kCuda).ok()) {
    if (auto created = mk::bench::CopyLatencyProbe::Create(65536); created.ok()) {
      probe = *std::move(created);
      if (auto idle = probe->Measure(200); idle.ok()) {
        std::printf("# 64 KiB pinned host-to-device copy, no kernel running: p50 %.1f us\n", *idle);
      }
    }
  }
#endif
  auto engine = StartEngine(dir, /*direct=*/false, 1ull << 30);
#if MK_HAVE_CUDA
  if (probe != nullptr) {
    if (auto busy = probe->Measure(200); busy.ok()) {
      std::printf("# 64 KiB pinned host-to-device copy, persistent kernel running: p50 %.1f us\n",
                  *busy);
    }
  }
#endif
  {  // the same engine's NOP round trip, to tell the copy's mode from the engine's
    std::vector<double> nop = mk::engine::bench::EngineRoundTrips(*engine, 2000);
    std::printf("# NOP round trip through this engine: p50 %.1f us\n", Percentile(nop, 0.5));
  }
  std::vector<uint32_t> ids;
  ids.reserve(n + n / 10);
  for (int i = 0; i < n + n / 10; ++i) {
    ids.push_back(*engine->RegisterResource(0, "resource64k.bin", 0, 0));
  }
  std::vector<double> us;
  for (int i = 0; i < n + n / 10; ++i) {
    mk::engine::SlotPayload miss;
    miss.opcode = mk::protocol::opcode::kLoadMiss;
    miss.args[0] = ids[i];
    const auto t0 = Clock::now();
    auto r = engine->Publish(0, {&miss, 1}, {});
    auto done =
        engine->WaitFor(0, std::vector<uint64_t>{r->first_ticket}, absl::Now() + absl::Seconds(10));
    if (!done.ok() || done->size() != 1 ||
        (*done)[0].status != mk::engine::CompletionStatus::kDone) {
      std::fprintf(stderr, "load miss failed\n");
      std::exit(1);
    }
    if (i >= n / 10) {
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
  }
  // The reader alone (no engine): Read of the same 64 KiB, one at a time.
  std::vector<double> reader_us;
  {
    auto reader = mk::io::FileReader::Create(mk::io::ReaderOptions{});
    std::vector<char> bytes(65536);
    for (int i = 0; i < n; ++i) {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      const auto t0 = Clock::now();
      if (!(*reader)
               ->Read(file, 0, bytes.size(), bytes.data(),
                      [&](const absl::Status&, uint64_t) {
                        std::lock_guard<std::mutex> lock(mu);
                        done = true;
                        cv.notify_one();
                      })
               .ok()) {
        std::exit(1);
      }
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return done; });
      reader_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
  }
  std::vector<double> pread_us;
  std::vector<char> buf(65536);
  const int fd = open(file.c_str(), O_RDONLY);
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    if (pread(fd, buf.data(), buf.size(), 0) != 65536) std::exit(1);
    pread_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  close(fd);
  mk::engine::EngineStats stats;
  engine->Stats(&stats);
  std::printf("# load miss: %s engine, %zu misses, %llu reads, io backend %s\n",
              engine->info().backend.c_str(), us.size(),
              static_cast<unsigned long long>(stats.io.requests_ok), stats.io.backend);
  std::printf(
      "# load miss: io request published -> bytes resident, mean %.1f us; first and "
      "last thousand misses p50 %.1f / %.1f us\n",
      stats.io.latency.sum_ns / 1e3 / std::max<uint64_t>(1, stats.io.latency.count()),
      Percentile({us.begin(), us.begin() + std::min<ptrdiff_t>(1000, std::ssize(us))}, 0.5),
      Percentile({us.end() - std::min<ptrdiff_t>(1000, std::ssize(us)), us.end()}, 0.5));
  Print("load_miss_64k_round_trip_p50", Percentile(us, 0.5), "us");
  Print("load_miss_64k_round_trip_p99", Percentile(us, 0.99), "us");
  Print("baseline_pread_64k_p50", Percentile(pread_us, 0.5), "us");
  std::printf("# reader alone: Read of 64 KiB p50 %.1f us\n", Percentile(reader_us, 0.5));
}

}  // namespace

int main() {
  const bool quick = Quick();
  const int files = quick ? 8 : 64;
  const fs::path root = fs::temp_directory_path() / ("mk_io_bench_" + std::to_string(getpid()));
  const fs::path dir = root / "tenants" / "0";  // tenant 0's folder: the files fio writes
  fs::create_directories(dir);
  Run(FioCommand(dir.string(), files, "--create_only=1") + " >/dev/null");
  std::vector<std::string> paths;
  for (const auto& entry : fs::directory_iterator(dir)) paths.push_back(entry.path().string());
  std::printf("# %zu files x 16 MiB, block %u KiB, queue depth %u, O_DIRECT\n", paths.size(),
              kBlock >> 10, kQueueDepth);

  mk::io::ReaderOptions options;
  options.backend = mk::io::Backend::kAuto;
  options.chunk_bytes = kBlock;
  options.staging_buffers = kQueueDepth;
  options.o_direct = true;
  auto reader = mk::io::FileReader::Create(options);
  if (!reader.ok()) {
    std::fprintf(stderr, "%s\n", reader.status().ToString().c_str());
    return 1;
  }
  std::printf("# loader backend: %s\n", (*reader)->backend_name());
  // fio, the loader and the engine take turns, three rounds (two with MK_BENCH_QUICK=1), and
  // the best round of each counts: the disk's speed drifts between runs on the lent machines
  // (fio alone varied 1.6-2.8 GB/s), and turns give every reader the same chances.
  double fio = 0, loader = 0, resident = 0;
  for (int round = 0; round < (quick ? 2 : 3); ++round) {
    const double f = FioReadBandwidth(Run(FioCommand(dir.string(), files, "")));
    const double l = LoaderBandwidth(**reader, paths);
    if (l <= 0) return 1;
    const double e = EngineLoadBandwidth(dir, paths);
    std::printf("# round %d: fio %.3f, loader %.3f, engine %.3f GB/s\n", round, f / 1e9, l / 1e9,
                e / 1e9);
    fio = std::max(fio, f);
    loader = std::max(loader, l);
    resident = std::max(resident, e);
  }
  Print("loader_bandwidth", loader / 1e9, "GB/s");
  Print("fio_io_uring_bandwidth", fio / 1e9, "GB/s");
  Print("loader_ratio_vs_fio", loader / fio, "x");
  Print("engine_load_bandwidth", resident / 1e9, "GB/s");
  double ceiling = fio;
#if MK_HAVE_CUDA
  if (mk::engine::BackendAvailable(mk::engine::EngineOptions::Backend::kCuda).ok()) {
    auto h2d = mk::bench::PinnedHostToDeviceBandwidth(256u << 20, 8);
    if (!h2d.ok()) {
      std::fprintf(stderr, "%s\n", h2d.status().ToString().c_str());
      return 1;
    }
    Print("pinned_h2d_bandwidth", *h2d / 1e9, "GB/s");
    ceiling = std::min(fio, *h2d);
  }
#endif
  Print("engine_load_ceiling_min_fio_h2d", ceiling / 1e9, "GB/s");
  Print("engine_load_ratio_vs_ceiling", resident / ceiling, "x");
  LoadMissRoundTrip(dir, quick ? 500 : 5000);
  fs::remove_all(root);
  return 0;
}
