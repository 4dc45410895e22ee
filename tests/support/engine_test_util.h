// Helpers shared by the engine test suites (CPU now, CUDA on the GPU machine).
#ifndef MK_TESTS_SUPPORT_ENGINE_TEST_UTIL_H_
#define MK_TESTS_SUPPORT_ENGINE_TEST_UTIL_H_

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mk/engine/engine.h"

namespace mk::engine::testing {

// The backend the engine suites run against: MK_TEST_ENGINE (auto, cpu, cuda or cuda-emulated;
// cpu by default). ctest registers one run of each suite per backend. A name that is not a
// backend ends the test program: a typo must not quietly test the CPU engine instead.
inline EngineOptions::Backend BackendUnderTest() {
  const char* name = std::getenv("MK_TEST_ENGINE");
  auto backend = ParseBackend(name == nullptr ? "cpu" : name);
  if (!backend.ok()) {
    const std::string why(backend.status().message());
    std::fprintf(stderr, "MK_TEST_ENGINE: %s\n", why.c_str());
    std::abort();
  }
  return *backend;
}

// Options for the backend under test, with the CUDA engine's knobs the test harness sets for
// runs under compute-sanitizer, where the kernel runs many times slower: MK_TEST_CUDA_STOP_TIMEOUT
// (a duration such as 30s) and MK_TEST_CUDA_SCOUT_WARPS=0 (racecheck starves scout warps).
inline EngineOptions SuiteOptions() {
  EngineOptions o;
  o.backend = BackendUnderTest();
  if (const char* timeout = std::getenv("MK_TEST_CUDA_STOP_TIMEOUT"); timeout != nullptr) {
    absl::Duration d;
    if (absl::ParseDuration(timeout, &d)) o.cuda.stop_timeout = d;
  }
  if (const char* scouts = std::getenv("MK_TEST_CUDA_SCOUT_WARPS"); scouts != nullptr) {
    o.cuda.scout_warps = std::strcmp(scouts, "0") != 0;
  }
  return o;
}

// SuiteOptions on a small ring: 4096 slots (NORMAL 2048), 2 workers, 64 tenants, 16 scratch words.
inline EngineOptions SmallRingSuiteOptions() {
  EngineOptions o = SuiteOptions();
  o.ring_slots = 4096;
  o.workers = 2;
  o.max_tenants = 64;
  o.scratch_words = 16;
  return o;
}

// MK_REQUIRE_GPU=1 (set on the GPU machine) turns a missing device into a failure.
inline bool GpuRequired() {
  const char* v = std::getenv("MK_REQUIRE_GPU");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

// In a test body or SetUp: skips with the reason when `backend` cannot run on this machine,
// or fails when MK_REQUIRE_GPU=1. The skip message starts "backend unavailable here: ", which
// is what ctest's skip pattern for gpu tests matches (cmake/mk_test.cmake): a gpu test that
// fails while another of its cases skips for some other reason still fails.
#define MK_REQUIRE_BACKEND(backend)                                                  \
  if (const absl::Status mk_available = ::mk::engine::BackendAvailable(backend);     \
      !mk_available.ok()) {                                                          \
    if (::mk::engine::testing::GpuRequired()) {                                      \
      FAIL() << "MK_REQUIRE_GPU=1 but the backend is unavailable: " << mk_available; \
    }                                                                                \
    GTEST_SKIP() << "backend unavailable here: " << mk_available.message();          \
  }

// Records every completion in arrival order; waits for a count with a deadline.
// (std::mutex: Debian's Abseil has no ThreadSanitizer annotations.)
class RecordingSink final : public CompletionSink {
 public:
  void OnCompletions(absl::Span<const Completion> batch) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      completions_.insert(completions_.end(), batch.begin(), batch.end());
    }
    arrived_.notify_all();
  }
  // True when at least `n` completions arrived before the timeout.
  bool WaitForCount(size_t n, absl::Duration timeout = absl::Seconds(30)) {
    std::unique_lock<std::mutex> lock(mu_);
    return arrived_.wait_for(lock, absl::ToChronoSeconds(timeout),
                             [&] { return completions_.size() >= n; });
  }
  std::vector<Completion> completions() {
    std::lock_guard<std::mutex> lock(mu_);
    return completions_;
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    completions_.clear();
  }

 private:
  std::mutex mu_;
  std::condition_variable arrived_;
  std::vector<Completion> completions_;  // guarded by mu_
};

inline SlotPayload Slot(uint32_t opcode, std::vector<uint32_t> args = {},
                        uint32_t priority = protocol::kDefaultPriority) {
  SlotPayload p;
  p.opcode = opcode;
  p.priority = priority;
  for (size_t i = 0; i < args.size(); ++i) p.args[i] = args[i];
  return p;
}

inline std::vector<uint64_t> Tickets(const PublishResult& r) {
  std::vector<uint64_t> t;
  for (uint32_t i = 0; i < r.count; ++i) t.push_back(r.first_ticket + i);
  return t;
}

// Publishes `slots`, retrying while the ring answers RESOURCE_EXHAUSTED (backpressure);
// returns the first other error.
inline absl::StatusOr<PublishResult> PublishWithRetry(Engine& engine, uint32_t tenant,
                                                      absl::Span<const SlotPayload> slots,
                                                      CompletionSink* sink) {
  for (;;) {
    auto r = engine.Publish(tenant, slots, {sink});
    if (r.ok() || r.status().code() != absl::StatusCode::kResourceExhausted) return r;
    std::this_thread::yield();  // the executor frees slots as it completes them
  }
}

// Creates and starts an engine (nullptr, with a test failure, when either fails).
inline std::unique_ptr<Engine> MakeStarted(const EngineOptions& options) {
  auto e = CreateEngine(options);
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return nullptr;
  EXPECT_TRUE((*e)->Start().ok());
  return *std::move(e);
}

// Publishes one slot and waits for its completion.
inline Completion RunOne(Engine& e, const SlotPayload& s, uint32_t tenant = 1) {
  auto r = e.Publish(tenant, {&s, 1}, {});
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return {};
  auto done = e.WaitFor(tenant, Tickets(*r), absl::Now() + absl::Seconds(30));
  EXPECT_TRUE(done.ok() && done->size() == 1);
  return done.ok() && done->size() == 1 ? (*done)[0] : Completion{};
}

// Waits until `predicate` holds or the timeout passes; returns the predicate's last value.
template <typename Predicate>
bool WaitUntil(Predicate predicate, absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!predicate()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::yield();  // polls engine-internal state (no event to block on)
  }
  return true;
}

}  // namespace mk::engine::testing

#endif  // MK_TESTS_SUPPORT_ENGINE_TEST_UTIL_H_
