// LOAD_MISS and CHECKSUM through the engine API on real files, with both io backends (the
// io_uring cases skip with the reason where io_uring is blocked), on the engine MK_TEST_ENGINE
// names: the CPU engine (resident copies in host memory) or, on the GPU machine, the CUDA
// engine (resident copies in device memory, CHECKSUM computed by the kernel).
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/engine/engine.h"
#include "mk/engine/testing/engine_peer.h"
#include "mk/io/file_reader.h"
#include "support/engine_test_util.h"
#include "support/io_uring.h"
#include "support/temp_files.h"

namespace mk::engine {
namespace {

namespace fs = std::filesystem;
namespace op = protocol::opcode;
using protocol::FaultCode;
using ::testing::HasSubstr;
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

  std::unique_ptr<Engine> Start(uint64_t budget = 1ull << 30, uint64_t tenant_budget = 0) {
    EngineOptions o = testing::SuiteOptions();
    o.workers = 2;
    o.max_tenants = 8;
    o.resource_root = root_.path().string();
    o.io_backend = GetParam();
    o.residency_budget_bytes = budget;
    o.tenant_residency_bytes = tenant_budget;
    auto e = CreateEngine(o);
    EXPECT_TRUE(e.ok()) << e.status();
    EXPECT_TRUE((*e)->Start().ok());
    return *std::move(e);
  }
  // Writes `name` into `tenant`'s folder of the root (tenants/<tenant>/, or shared/).
  std::string File(const std::string& name, size_t size, uint32_t seed, uint32_t tenant = 1) {
    std::string data = mk::testing::RandomBytes(size, seed);
    root_.WriteFile(FolderOf(tenant) + "/" + name, data);
    return data;
  }
  static std::string FolderOf(uint32_t tenant) {
    return tenant == kSharedResourceOwner ? "shared" : "tenants/" + std::to_string(tenant);
  }
  fs::path PathOf(const std::string& name, uint32_t tenant = 1) const {
    return root_.path() / FolderOf(tenant) / name;
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

// ReadBuffer with a resource id reads its resident bytes back (read-only): the tenant's own
// and shared resources, never another tenant's; a resource must be resident first.
TEST_P(EngineResourcesTest, ResidentResourcesReadBackThroughReadBuffer) {
  const std::string data = File("table.bin", 300001, 9);
  const std::string shared = File("common.bin", 5000, 10, kSharedResourceOwner);
  auto e = Start();
  const uint32_t id = *e->RegisterResource(1, "table.bin", 7, 0);
  const uint32_t common = *e->RegisterResource(kSharedResourceOwner, "common.bin", 0, 0);
  std::string out(1000, '\0');
  const absl::Status cold = e->ReadBuffer(1, id, 0, absl::MakeSpan(out));
  EXPECT_EQ(cold.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(cold.message(), HasSubstr("load it first (LOAD_MISS)"));
  ASSERT_EQ(RunOne(*e, Slot(op::kLoadMiss, {id, 0})).status, CompletionStatus::kDone);
  ASSERT_EQ(RunOne(*e, Slot(op::kLoadMiss, {common, 0}), 2).status, CompletionStatus::kDone);
  const absl::Status read = e->ReadBuffer(1, id, 299000 - 7, absl::MakeSpan(out));
  if (testing::BackendUnderTest() == EngineOptions::Backend::kCuda) {
    // Resident in device memory: not readable back yet (docs/buffers.md says so).
    EXPECT_EQ(read.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(read.message(), HasSubstr("device memory"));
    return;
  }
  ASSERT_TRUE(read.ok()) << read;
  EXPECT_EQ(out, data.substr(299000, 1000)) << "the last bytes of the file";
  std::string all(5000, '\0');
  ASSERT_TRUE(e->ReadBuffer(2, common, 0, absl::MakeSpan(all)).ok()) << "shared: any tenant";
  EXPECT_EQ(all, shared);
  EXPECT_EQ(e->ReadBuffer(2, id, 0, absl::MakeSpan(out)).code(), absl::StatusCode::kNotFound)
      << "tenant 1's resource does not exist for tenant 2";
  EXPECT_EQ(e->ReadBuffer(1, id, 299000, absl::MakeSpan(out)).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(e->WriteBuffer(1, id, 0, "x").code(), absl::StatusCode::kNotFound)
      << "resources are read-only: a resource id is no buffer to write";
}

TEST_P(EngineResourcesTest, DeletedAndTruncatedFilesFaultWithTheirErrno) {
  File("gone.bin", 100000, 2);
  File("short.bin", 200000, 3);
  auto e = Start();
  const uint32_t gone = *e->RegisterResource(1, "gone.bin", 0, 0);
  const uint32_t shrunk = *e->RegisterResource(1, "short.bin", 0, 0);
  fs::remove(PathOf("gone.bin"));
  fs::resize_file(PathOf("short.bin"), 1000);
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

// A registered file swapped for a symbolic link (to a file outside the root) or for a FIFO after
// registration: the load faults at once with the errno, no byte of the link's target becomes
// resident, the io thread does not hang, and other loads go on.
TEST_P(EngineResourcesTest, FilesSwappedAfterRegistrationFaultInsteadOfEscapingOrBlocking) {
  File("linked.bin", 4096, 1);
  File("fifo.bin", 4096, 2);
  const std::string fine = File("fine.bin", 4096, 3);
  root_.WriteFile("secret.bin", "the tenants file, say");
  auto e = Start();
  const uint32_t linked = *e->RegisterResource(1, "linked.bin", 0, 0);
  const uint32_t fifo = *e->RegisterResource(1, "fifo.bin", 0, 0);
  const uint32_t ok = *e->RegisterResource(1, "fine.bin", 0, 0);
  fs::remove(PathOf("linked.bin"));
  fs::create_symlink(root_.path() / "secret.bin", PathOf("linked.bin"));
  fs::remove(PathOf("fifo.bin"));
  ASSERT_EQ(mkfifo(PathOf("fifo.bin").c_str(), 0600), 0);
  ExpectFault(RunOne(*e, Slot(op::kLoadMiss, {linked, 0})), FaultCode::kIoError, ELOOP);
  ExpectFault(RunOne(*e, Slot(op::kChecksum, {linked, 0, 0, 1})), FaultCode::kResourceNotFound,
              linked);
  ExpectFault(RunOne(*e, Slot(op::kLoadMiss, {fifo, 0})), FaultCode::kIoError, EINVAL);
  ASSERT_EQ(RunOne(*e, Slot(op::kLoadMiss, {ok, 0})).status, CompletionStatus::kDone);
  EXPECT_EQ(RunOne(*e, Slot(op::kChecksum, {ok, 0, 0, 0})).results[0],
            static_cast<uint32_t>(HostTreeHash(fine)));
  ASSERT_TRUE(e->Drain(absl::Now() + absl::Seconds(30)).ok()) << "nothing hangs the drain";
}

// Each tenant's paths name its own folder only: another tenant's file is NOT_FOUND by any
// spelling, so it can neither be registered nor hashed. Shared files are the admin's to register
// and every tenant's to use; no tenant evicts them.
TEST_P(EngineResourcesTest, TenantsReachOnlyTheirOwnAndSharedResources) {
  File("model.bin", 8192, 1, /*tenant=*/1);
  const std::string shared_data = File("common.bin", 8192, 2, kSharedResourceOwner);
  auto e = Start();
  ASSERT_TRUE(e->RegisterResource(1, "model.bin", 0, 0).ok());
  for (const char* spelling : {"model.bin", "tenants/1/model.bin", "../1/model.bin"}) {
    EXPECT_NE(e->RegisterResource(2, spelling, 0, 0).status().code(), absl::StatusCode::kOk)
        << spelling;
  }
  EXPECT_EQ(e->RegisterResource(2, "common.bin", 0, 0).status().code(), absl::StatusCode::kNotFound)
      << "shared files are registered by the admin only";
  auto shared = e->RegisterResource(kSharedResourceOwner, "common.bin", 0, 0);
  ASSERT_TRUE(shared.ok()) << shared.status();
  for (uint32_t tenant : {1u, 2u}) {
    ASSERT_EQ(RunOne(*e, Slot(op::kLoadMiss, {*shared, 0}), tenant).status,
              CompletionStatus::kDone);
    EXPECT_EQ(RunOne(*e, Slot(op::kChecksum, {*shared, 0, 0, 0}), tenant).results[0],
              static_cast<uint32_t>(HostTreeHash(shared_data)));
  }
  EXPECT_EQ(e->EvictResource(2, *shared).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(e->ListResources(2)->size(), 1u) << "tenant 2 sees the shared resource";
  EXPECT_EQ(e->ListResources(1)->size(), 2u);
  EXPECT_TRUE(e->EvictResource(kSharedResourceOwner, *shared).ok());
}

// Residency is per tenant: a tenant's loads evict only its own copies, and when other tenants'
// copies fill the budget its load faults RESOURCE_EXHAUSTED instead of evicting them.
TEST_P(EngineResourcesTest, OneTenantsLoadsNeverEvictAnothersResources) {
  const std::string theirs = File("theirs.bin", 1 << 20, 1, /*tenant=*/2);
  for (const char* name : {"a", "b", "c"}) File(name, 1 << 20, name[0], /*tenant=*/1);
  File("d", 1 << 20, 4, /*tenant=*/3);
  auto e = Start(/*budget=*/3 << 20, /*tenant_budget=*/2 << 20);
  const uint32_t x = *e->RegisterResource(2, "theirs.bin", 0, 0);
  ASSERT_EQ(RunOne(*e, Slot(op::kLoadMiss, {x, 0}), 2).status, CompletionStatus::kDone);
  const uint32_t a = *e->RegisterResource(1, "a", 0, 0);
  const uint32_t b = *e->RegisterResource(1, "b", 0, 0);
  const uint32_t c = *e->RegisterResource(1, "c", 0, 0);
  for (uint32_t id : {a, b, c}) {
    ASSERT_EQ(RunOne(*e, Slot(op::kLoadMiss, {id, 0})).status, CompletionStatus::kDone);
  }
  ExpectFault(RunOne(*e, Slot(op::kChecksum, {a, 0, 0, 0})), FaultCode::kResourceNotFound, a);
  EXPECT_EQ(RunOne(*e, Slot(op::kChecksum, {x, 0, 0, 0}), 2).results[0],
            static_cast<uint32_t>(HostTreeHash(theirs)))
      << "tenant 1's loads evicted its own oldest copy, not tenant 2's";
  const uint32_t d = *e->RegisterResource(3, "d", 0, 0);
  ExpectFault(RunOne(*e, Slot(op::kLoadMiss, {d, 0}), 3), FaultCode::kResourceExhausted, d);
  EXPECT_EQ(RunOne(*e, Slot(op::kChecksum, {x, 0, 0, 0}), 2).status, CompletionStatus::kDone);
  EXPECT_EQ(RunOne(*e, Slot(op::kChecksum, {b, 0, 0, 0}), 1).status, CompletionStatus::kDone);
}

// More loads than the io queue has slots (reads held, so the queue fills for certain): the rest
// wait in the loader, their ring slots asleep in WAIT_IO, instead of spinning through REQUEUE;
// once the reads go, every load completes.
TEST_P(EngineResourcesTest, AFullIoQueueParksLoadsInsteadOfRequeueing) {
  auto e = Start();
  std::vector<uint32_t> ids;
  for (int i = 0; i < 100; ++i) {
    File("q" + std::to_string(i), 4096, 1000 + i);
    ids.push_back(*e->RegisterResource(1, "q" + std::to_string(i), 0, 0));
  }
  std::vector<SlotPayload> misses;
  misses.reserve(ids.size());
  for (uint32_t id : ids) misses.push_back(Slot(op::kLoadMiss, {id, 0}));
  testing::EnginePeer::HoldIoReads(*e, true);
  auto published = e->Publish(1, misses, {});
  ASSERT_TRUE(published.ok()) << published.status();
  // Every miss is either in the io queue (64 slots) or parked behind it.
  EngineStats stats;
  ASSERT_TRUE(testing::WaitUntil([&] {
    e->Stats(&stats);
    return stats.io.load_misses == ids.size();
  }));
  EXPECT_EQ(stats.io.io_queue_full, ids.size() - 64) << "64 io slots, the rest parked";
  EXPECT_EQ(stats.io.requeued, 0u) << "no load spun through REQUEUE";
  testing::EnginePeer::HoldIoReads(*e, false);
  auto got = e->WaitFor(1, Tickets(*published), absl::Now() + absl::Seconds(60));
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), ids.size());
  for (const Completion& c : *got) EXPECT_EQ(c.status, CompletionStatus::kDone);
  e->Stats(&stats);
  EXPECT_EQ(stats.io.requests_ok, ids.size());
  EXPECT_EQ(stats.io.requeued, 0u);
}

INSTANTIATE_TEST_SUITE_P(IoBackends, EngineResourcesTest, ::testing::Values("io_uring", "threads"),
                         [](const auto& info) { return info.param; });

TEST(EngineWithoutResourcesTest, ResourceApiNeedsARoot) {
  MK_REQUIRE_BACKEND(testing::BackendUnderTest());
  EngineOptions o = testing::SuiteOptions();
  auto e = *CreateEngine(o);
  EXPECT_EQ(e->RegisterResource(0, "x", 0, 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace mk::engine
