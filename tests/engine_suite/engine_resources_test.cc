// LOAD_MISS and CHECKSUM through the engine API on real files, with both io backends (the
// io_uring cases skip with the reason where io_uring is blocked), on the engine MK_TEST_ENGINE
// names: the CPU engine (resident copies in host memory) or, on the GPU machine, the CUDA
// engine (resident copies in device memory, CHECKSUM computed by the kernel).
#include <unistd.h>
#include <xxhash.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/engine/engine.h"
#include "mk/io/file_reader.h"
#include "support/engine_test_util.h"
#include "support/io_uring.h"
#include "support/temp_files.h"

namespace mk::engine {
namespace {

namespace fs = std::filesystem;
namespace op = protocol::opcode;
using protocol::FaultCode;
using testing::Slot;
using testing::Tickets;

// The protocol's tree hash, computed here independently of the engine.
uint64_t HostTreeHash(const std::string& bytes) {
  std::string leaves;
  for (size_t at = 0; at < bytes.size(); at += 65536) {
    const uint64_t leaf = XXH64(bytes.data() + at, std::min<size_t>(65536, bytes.size() - at), 0);
    for (int b = 0; b < 8; ++b) leaves.push_back(static_cast<char>(leaf >> (8 * b)));
  }
  return XXH64(leaves.data(), leaves.size(), 0);
}

class EngineResourcesTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    MK_REQUIRE_BACKEND(testing::BackendUnderTest());
    if (GetParam() == "io_uring") {
      MK_REQUIRE_IO_URING();
    }
  }

  std::unique_ptr<Engine> Start(uint64_t budget = 1ull << 30) {
    EngineOptions o = testing::SuiteOptions();
    o.workers = 2;
    o.max_tenants = 8;
    o.resource_root = root_.path().string();
    o.io_backend = GetParam();
    o.residency_budget_bytes = budget;
    auto e = CreateEngine(o);
    EXPECT_TRUE(e.ok()) << e.status();
    EXPECT_TRUE((*e)->Start().ok());
    return *std::move(e);
  }
  std::string File(const std::string& name, size_t size, uint32_t seed) {
    std::string data = mk::testing::RandomBytes(size, seed);
    root_.WriteFile(name, data);
    return data;
  }
  std::vector<Completion> Run(Engine& e, const std::vector<SlotPayload>& slots,
                              uint32_t tenant = 1) {
    auto r = e.Publish(tenant, slots, {});
    EXPECT_TRUE(r.ok()) << r.status();
    auto got = e.WaitFor(tenant, Tickets(*r), absl::Now() + absl::Seconds(60));
    EXPECT_TRUE(got.ok());
    std::sort(got->begin(), got->end(), [](auto& a, auto& b) { return a.ticket < b.ticket; });
    return *got;
  }
  Completion RunOne(Engine& e, const SlotPayload& s, uint32_t tenant = 1) {
    auto got = Run(e, {s}, tenant);
    return got.size() == 1 ? got[0] : Completion{};
  }
  static void ExpectFault(const Completion& c, FaultCode code, uint32_t detail) {
    EXPECT_EQ(c.status, CompletionStatus::kFault);
    EXPECT_EQ(c.fault_code, static_cast<uint32_t>(code));
    EXPECT_EQ(c.fault_detail, detail);
  }
  const mk::testing::ScopedTempDir root_{"mk_res"};
};

TEST_P(EngineResourcesTest, ChecksumAfterLoadMissMatchesTheFile) {
  const std::string data = File("model.bin", (1 << 20) + 12345, 1);
  auto e = Start();
  auto id = e->RegisterResource(1, "model.bin", 1000, 0);
  ASSERT_TRUE(id.ok()) << id.status();
  ExpectFault(RunOne(*e, Slot(op::kChecksum, {*id, 0, 0, 0})), FaultCode::kResourceNotFound, *id);
  Completion loaded = RunOne(*e, Slot(op::kLoadMiss, {*id, 0}));
  ASSERT_EQ(loaded.status, CompletionStatus::kDone);
  EXPECT_EQ(loaded.results[0], data.size() - 1000) << "result0/1: resident length";
  Completion whole = RunOne(*e, Slot(op::kChecksum, {*id, 0, 0, 0}));
  ASSERT_EQ(whole.status, CompletionStatus::kDone);
  const uint64_t expect = HostTreeHash(data.substr(1000));
  EXPECT_EQ(whole.results[0], static_cast<uint32_t>(expect));
  EXPECT_EQ(whole.results[1], static_cast<uint32_t>(expect >> 32));
  EXPECT_EQ(whole.results[2], 17u) << "blocks hashed";
  Completion part = RunOne(*e, Slot(op::kChecksum, {*id, 65536, 0, 131072}));
  EXPECT_EQ(part.results[0],
            static_cast<uint32_t>(HostTreeHash(data.substr(1000 + 65536, 131072))));
  // An unaligned start and a ragged end (byte-wise reads on the device).
  Completion odd = RunOne(*e, Slot(op::kChecksum, {*id, 3, 0, 70001}));
  const uint64_t odd_expect = HostTreeHash(data.substr(1000 + 3, 70001));
  EXPECT_EQ(odd.results[0], static_cast<uint32_t>(odd_expect));
  EXPECT_EQ(odd.results[1], static_cast<uint32_t>(odd_expect >> 32));
  EXPECT_EQ(odd.results[2], 2u);
  ExpectFault(RunOne(*e, Slot(op::kChecksum, {*id, 0, 1, 10})), FaultCode::kOutOfBounds, *id);
  ExpectFault(RunOne(*e, Slot(op::kLoadMiss, {*id, 0}), /*tenant=*/2), FaultCode::kResourceNotFound,
              *id);
  auto listed = *e->ListResources(1);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_TRUE(listed[0].resident);
  EngineStats stats;
  e->Stats(&stats);
  EXPECT_EQ(stats.io.requests_ok, 1u);
  EXPECT_STREQ(stats.io.backend, GetParam().c_str());
}

TEST_P(EngineResourcesTest, DeletedAndTruncatedFilesFaultWithTheirErrno) {
  File("gone.bin", 100000, 2);
  File("short.bin", 200000, 3);
  auto e = Start();
  const uint32_t gone = *e->RegisterResource(1, "gone.bin", 0, 0);
  const uint32_t shrunk = *e->RegisterResource(1, "short.bin", 0, 0);
  fs::remove(root_.path() / "gone.bin");
  fs::resize_file(root_.path() / "short.bin", 1000);
  ExpectFault(RunOne(*e, Slot(op::kLoadMiss, {gone, 0})), FaultCode::kIoError, ENOENT);
  ExpectFault(RunOne(*e, Slot(op::kLoadMiss, {shrunk, 0})), FaultCode::kIoError, ENODATA);
  EngineStats stats;
  e->Stats(&stats);
  EXPECT_EQ(stats.io.requests_error, 2u);
}

TEST_P(EngineResourcesTest, PathTraversalIsRejected) {
  auto e = Start();
  EXPECT_EQ(e->RegisterResource(1, "../etc/passwd", 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->RegisterResource(1, "/etc/passwd", 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(EngineResourcesTest, BudgetEvictsLeastRecentlyUsed) {
  for (const char* name : {"a", "b", "c"}) File(name, 1 << 20, name[0]);
  File("huge", 3 << 20, 9);
  auto e = Start(/*budget=*/(5 << 20) / 2);
  const uint32_t a = *e->RegisterResource(1, "a", 0, 0);
  const uint32_t b = *e->RegisterResource(1, "b", 0, 0);
  const uint32_t c = *e->RegisterResource(1, "c", 0, 0);
  const uint32_t huge = *e->RegisterResource(1, "huge", 0, 0);
  ASSERT_EQ(RunOne(*e, Slot(op::kLoadMiss, {a, 0})).status, CompletionStatus::kDone);
  ASSERT_EQ(RunOne(*e, Slot(op::kLoadMiss, {b, 0})).status, CompletionStatus::kDone);
  ASSERT_EQ(RunOne(*e, Slot(op::kLoadMiss, {c, 0})).status, CompletionStatus::kDone);
  ExpectFault(RunOne(*e, Slot(op::kChecksum, {a, 0, 0, 0})), FaultCode::kResourceNotFound, a);
  EXPECT_EQ(RunOne(*e, Slot(op::kChecksum, {b, 0, 0, 0})).status, CompletionStatus::kDone);
  ExpectFault(RunOne(*e, Slot(op::kLoadMiss, {huge, 0})), FaultCode::kResourceExhausted, huge);
  EngineStats stats;
  e->Stats(&stats);
  EXPECT_EQ(stats.io.evictions, 1u);
  EXPECT_EQ(stats.io.resident_bytes, 2u << 20);
  ASSERT_TRUE(e->EvictResource(1, b).ok());
  EXPECT_EQ(e->ListResources(1)->size(), 3u);
}

TEST_P(EngineResourcesTest, ConcurrentMissesLoadEachResourceOnce) {
  std::vector<uint32_t> ids;
  auto e = Start();
  for (int i = 0; i < 50; ++i) {
    File("r" + std::to_string(i), 65536, 100 + i);
    ids.push_back(*e->RegisterResource(1, "r" + std::to_string(i), 0, 0));
  }
  std::vector<SlotPayload> misses;
  misses.reserve(1000);
  for (int i = 0; i < 1000; ++i) misses.push_back(Slot(op::kLoadMiss, {ids[i % 50], 0}));
  std::vector<Completion> got = Run(*e, misses);
  ASSERT_EQ(got.size(), 1000u);
  for (const Completion& c : got) EXPECT_EQ(c.status, CompletionStatus::kDone);
  EngineStats stats;
  e->Stats(&stats);
  EXPECT_EQ(stats.io.requests_ok, 50u) << "1000 misses on 50 resources: 50 reads";
  EXPECT_EQ(stats.io.load_misses, 1000u + stats.io.requeued);
}

TEST_P(EngineResourcesTest, PrefetchCompletesAtOnceAndTheLoadGoesOn) {
  const std::string data = File("p.bin", 300000, 5);
  auto e = Start();
  const uint32_t id = *e->RegisterResource(1, "p.bin", 0, 0);
  Completion prefetch = RunOne(*e, Slot(op::kLoadMiss, {id, 1}));
  EXPECT_EQ(prefetch.status, CompletionStatus::kDone);
  EXPECT_EQ(RunOne(*e, Slot(op::kLoadMiss, {id, 0})).status, CompletionStatus::kDone);
  Completion sum = RunOne(*e, Slot(op::kChecksum, {id, 0, 0, 0}));
  EXPECT_EQ(sum.results[0], static_cast<uint32_t>(HostTreeHash(data)));
  EngineStats stats;
  e->Stats(&stats);
  EXPECT_EQ(stats.io.requests_ok, 1u) << "the prefetch's load served the later miss";
}

INSTANTIATE_TEST_SUITE_P(IoBackends, EngineResourcesTest, ::testing::Values("io_uring", "threads"),
                         [](const auto& info) { return info.param; });

TEST(EngineWithoutResourcesTest, ResourceApiNeedsARoot) {
  EngineOptions o;
  o.backend = EngineOptions::Backend::kCpu;
  auto e = *CreateEngine(o);
  EXPECT_EQ(e->RegisterResource(0, "x", 0, 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace mk::engine
