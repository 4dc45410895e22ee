// The memory opcodes on a host engine (default: the CPU engine; MK_TEST_ENGINE picks another)
// against a plain single-threaded C++ loop doing the same work on the same bytes, in the same
// run (docs/buffers.md). Each opcode runs as many 16 MiB slots (256 KiB for DFA_SCAN, its
// limit) published at once, so the engine's workers share them; the loop does them one after
// another.
//   bench: memory_ops <op>_engine_gbps / <op>_loop_gbps / <op>_vs_loop
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "mk/engine/engine.h"
#include "mk/engine/memory_opcodes.h"
#include "support/engine_test_util.h"

namespace mk::engine {
namespace {

using bench::Clock;
using bench::Seconds;
namespace op = protocol::opcode;

constexpr uint32_t kTenant = 1;

uint32_t Lo(uint64_t v) { return static_cast<uint32_t>(v); }
uint32_t Hi(uint64_t v) { return static_cast<uint32_t>(v >> 32); }

class Bench {
 public:
  explicit Bench(Engine& e) : e_(e) {}

  uint32_t Buffer(uint64_t bytes, uint8_t seed) {
    auto b = e_.CreateBuffer(kTenant, bytes);
    if (!b.ok()) Die(b.status());
    std::string data(bytes, '\0');
    std::mt19937 rng(seed);
    for (char& c : data) c = static_cast<char>(rng());
    if (absl::Status s = e_.WriteBuffer(kTenant, b->handle, 0, data); !s.ok()) Die(s);
    return b->handle;
  }

  // Seconds to run `slots` (published together) to completion; every one must be DONE.
  double Run(const std::vector<SlotPayload>& slots) {
    testing::RecordingSink& sink = *sinks_.emplace_back(std::make_unique<testing::RecordingSink>());
    const auto start = Clock::now();
    for (size_t i = 0; i < slots.size(); i += 64) {
      const size_t n = std::min<size_t>(64, slots.size() - i);
      auto r = testing::PublishWithRetry(e_, kTenant, {slots.data() + i, n}, &sink);
      if (!r.ok()) Die(r.status());
    }
    if (!sink.WaitForCount(slots.size(), absl::Minutes(5))) Die(absl::DeadlineExceededError("run"));
    const double seconds = Seconds(Clock::now() - start);
    for (const Completion& c : sink.completions()) {
      if (c.status != CompletionStatus::kDone) {
        std::fprintf(stderr, "slot faulted: code %u detail %u\n", c.fault_code, c.fault_detail);
        std::abort();
      }
    }
    return seconds;
  }

  static void Report(const char* name, double bytes, double engine_s, double loop_s) {
    bench::Print("memory_ops", (std::string(name) + "_engine_gbps").c_str(), bytes / engine_s / 1e9,
                 "GB/s");
    bench::Print("memory_ops", (std::string(name) + "_loop_gbps").c_str(), bytes / loop_s / 1e9,
                 "GB/s");
    bench::Print("memory_ops", (std::string(name) + "_vs_loop").c_str(), loop_s / engine_s, "x");
  }

  [[noreturn]] static void Die(const absl::Status& s) {
    std::fprintf(stderr, "memory_ops_bench: %s\n", s.ToString().c_str());
    std::abort();
  }

 private:
  Engine& e_;
  // Kept until the bench ends: a worker may still be returning from a sink's OnCompletions
  // when its last completion has been counted.
  std::vector<std::unique_ptr<testing::RecordingSink>> sinks_;
};

double TimeLoop(const std::function<void()>& body) {
  const auto start = Clock::now();
  body();
  return Seconds(Clock::now() - start);
}

int Main() {
  EngineOptions o;
  o.backend = testing::BackendUnderTest();
  o.tenant_buffer_bytes = 0;
  auto e = testing::MakeStarted(o);
  if (e == nullptr) return 1;
  Bench b(*e);
  const uint64_t chunk = protocol::memory::kMaxSlotBytes;  // 16 MiB per slot
  const uint32_t slots = bench::Quick() ? 8 : 32;
  const uint64_t total = chunk * slots;
  std::printf("memory_ops_bench: engine %s, %u workers, %u slots of %llu MiB\n",
              e->info().backend.c_str(), e->info().workers, slots,
              static_cast<unsigned long long>(chunk >> 20));

  // COPY: src -> dst, slot i copies chunk i.
  const uint32_t src = b.Buffer(total, 1), dst = b.Buffer(total, 2);
  std::vector<SlotPayload> work;
  for (uint32_t i = 0; i < slots; ++i) {
    const uint64_t off = i * chunk;
    work.push_back(testing::Slot(
        op::kCopy, {src, Lo(off), Hi(off), dst, Lo(off), Hi(off), Lo(chunk), Hi(chunk)}));
  }
  std::string a(total, '\0'), c(total, 'c');
  std::mt19937 bytes_rng(1);
  for (char& ch : a) ch = static_cast<char>(bytes_rng());
  double engine_s = b.Run(work);
  double loop_s = TimeLoop([&] { std::memmove(c.data(), a.data(), total); });
  Bench::Report("copy", static_cast<double>(total), engine_s, loop_s);

  // FILL with a 4-byte pattern.
  work.clear();
  for (uint32_t i = 0; i < slots; ++i) {
    const uint64_t off = i * chunk;
    work.push_back(
        testing::Slot(op::kFill, {dst, Lo(off), Hi(off), Lo(chunk), Hi(chunk), 0x01020304, 4}));
  }
  engine_s = b.Run(work);
  loop_s = TimeLoop([&] {
    for (uint64_t i = 0; i < total; ++i) c[i] = static_cast<char>(0x01020304 >> (8 * (i % 4)));
  });
  Bench::Report("fill", static_cast<double>(total), engine_s, loop_s);

  // DFA_SCAN: a 16-state DFA over the random bytes.
  constexpr uint32_t kStates = 16;
  std::vector<uint32_t> table(kStates * 256 + 1);
  std::mt19937 rng(3);
  for (uint32_t i = 0; i < kStates * 256; ++i) table[i] = rng() % kStates;
  table[size_t{kStates} * 256] = 0x5555;  // accepting: the even states
  const uint32_t htable = b.Buffer(table.size() * 4, 0);
  if (absl::Status s = e->WriteBuffer(
          kTenant, htable, 0, {reinterpret_cast<const char*>(table.data()), table.size() * 4});
      !s.ok()) {
    Bench::Die(s);
  }
  // One slot scans at most 256 KiB (kMaxScanBytes): the same bytes as more, smaller slots.
  work.clear();
  const uint64_t scan = protocol::memory::kMaxScanBytes;
  for (uint64_t off = 0; off < total; off += scan) {
    work.push_back(testing::Slot(
        op::kDfaScan, {htable, 0, 0, kStates, src, Lo(off), Hi(off), Lo(scan), Hi(scan), 0}));
  }
  engine_s = b.Run(work);
  uint64_t accepted = 0;
  loop_s = TimeLoop([&] {
    uint32_t state = 0;
    for (uint64_t i = 0; i < total; ++i) {
      state = table[state * 256 + static_cast<uint8_t>(a[i])];
      accepted += (table[size_t{kStates} * 256] >> state) & 1u;
    }
  });
  Bench::Report("dfa_scan", static_cast<double>(total), engine_s, loop_s);

  // GEMV f32: W of `slots` row blocks, each 16 MiB (2048 x 2048 f32).
  // The same f32 values (in [-1, 1]: no denormals) for the engine and the loop.
  constexpr uint32_t kCols = 2048, kRowsPerSlot = 2048;
  std::vector<float> w(total / 4), x(kCols, 0.5f), y(total / 4 / kCols);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  for (float& v : w) v = unit(rng);
  const uint32_t hw = b.Buffer(total, 0);
  const uint32_t hx = b.Buffer(uint64_t{kCols} * 4, 0),
                 hy = b.Buffer(uint64_t{kRowsPerSlot} * slots * 4, 5);
  for (const auto& [handle, values] : {std::pair{hw, &w}, std::pair{hx, &x}}) {
    const absl::Status s = e->WriteBuffer(
        kTenant, handle, 0, {reinterpret_cast<const char*>(values->data()), values->size() * 4});
    if (!s.ok()) Bench::Die(s);
  }
  work.clear();
  for (uint32_t i = 0; i < slots; ++i) {
    const uint64_t w_off = i * chunk, y_off = uint64_t{i} * kRowsPerSlot * 4;
    work.push_back(testing::Slot(op::kGemv, {hw, Lo(w_off), Hi(w_off), kRowsPerSlot, kCols, 0, hx,
                                             0, 0, hy, Lo(y_off), Hi(y_off)}));
  }
  engine_s = b.Run(work);
  loop_s = TimeLoop([&] {
    for (size_t r = 0; r < y.size(); ++r) {
      float sum = 0;
      for (uint32_t col = 0; col < kCols; ++col) sum += w[r * kCols + col] * x[col];
      y[r] = sum;
    }
  });
  Bench::Report("gemv_f32", static_cast<double>(total), engine_s, loop_s);

  // EMBEDDING_GATHER: 1 KiB rows of the 16 MiB-per-slot source, 16384 indices per slot.
  constexpr uint32_t kRowBytes = 1024, kCount = 16384;
  const uint32_t rows = static_cast<uint32_t>(total / kRowBytes);
  std::vector<uint32_t> index(kCount);
  for (uint32_t& i : index) i = rng() % rows;
  const uint32_t hindex = b.Buffer(uint64_t{kCount} * 4, 0);
  if (absl::Status s = e->WriteBuffer(
          kTenant, hindex, 0, {reinterpret_cast<const char*>(index.data()), size_t{kCount} * 4});
      !s.ok()) {
    Bench::Die(s);
  }
  work.clear();
  for (uint32_t i = 0; i < slots; ++i) {
    const uint64_t out_off = i * chunk;
    work.push_back(testing::Slot(op::kEmbeddingGather, {src, 0, 0, kRowBytes, rows, hindex, 0, 0,
                                                        kCount, dst, Lo(out_off), Hi(out_off)}));
  }
  engine_s = b.Run(work);
  loop_s = TimeLoop([&] {
    for (uint32_t s = 0; s < slots; ++s) {
      for (uint32_t i = 0; i < kCount; ++i) {
        std::memcpy(c.data() + s * chunk + uint64_t{i} * kRowBytes,
                    a.data() + uint64_t{index[i]} * kRowBytes, kRowBytes);
      }
    }
  });
  Bench::Report("gather", static_cast<double>(total), engine_s, loop_s);
  if (accepted == 42 && y[0] == 42 && c[0] == 42) std::printf("(unlikely)\n");  // keep the loops
  // Workers stop before the bench's sinks go away.
  if (absl::StatusOr<EngineCounters> stopped = e->Shutdown(); !stopped.ok()) {
    Bench::Die(stopped.status());
  }
  return 0;
}

}  // namespace
}  // namespace mk::engine

int main() { return mk::engine::Main(); }
