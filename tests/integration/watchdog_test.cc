// The watchdog against a real server: a stall injected through the engine's test hook trips it
// within two intervals (metric, health), and recovery restarts the engine, fails the in-flight
// slots explicitly and returns health to SERVING.
#include <atomic>
#include <thread>

#include "gmock/gmock.h"
#include "grpc_health_v1.grpc.pb.h"
#include "gtest/gtest.h"
#include "mk/engine/testing/engine_peer.h"
#include "support/engine_test_util.h"
#include "support/temp_files.h"
#include "support/test_server.h"

namespace mk {
namespace {

using ::testing::HasSubstr;
using testing::TestServer;

grpc::health::v1::HealthCheckResponse::ServingStatus Health(client::Client& c) {
  auto stub = grpc::health::v1::Health::NewStub(c.channel());
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("mk.v1.Megakernel");
  grpc::health::v1::HealthCheckResponse resp;
  if (!stub->Check(&ctx, req, &resp).ok()) return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  return resp.status();
}

// True when the exposition has `line` as a whole line (not inside a HELP text).
bool MetricsContain(TestServer& ts, const std::string& line) {
  return ("\n" + ts.server->RenderMetrics()).find("\n" + line + "\n") != std::string::npos;
}

// A server whose watchdog samples every 50 ms and calls two samples without progress a stall.
std::unique_ptr<TestServer> StartWithWatchdog(bool recover) {
  server::ServerOptions so;
  so.watchdog.interval = absl::Milliseconds(50);
  so.watchdog.stall_intervals = 2;
  so.watchdog.recover = recover;
  return TestServer::Start(so);
}

TEST(WatchdogTest, StallIsDetectedAndReportedWithoutRecovery) {
  auto ts = StartWithWatchdog(/*recover=*/false);
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  EXPECT_TRUE(MetricsContain(*ts, "mk_watchdog_stalled 0"));
  engine::testing::EnginePeer::PauseExecution(*ts->engine, true);
  const absl::Time stalled_at = absl::Now();
  ASSERT_TRUE(c->Publish(std::vector<client::Slot>(10, client::Slot{})).ok());
  ASSERT_TRUE(
      engine::testing::WaitUntil([&] { return MetricsContain(*ts, "mk_watchdog_stalled 1"); }));
  // Two intervals of 50 ms plus scheduling slack on a loaded 2-core machine.
  EXPECT_LT(absl::Now() - stalled_at, absl::Seconds(2));
  EXPECT_EQ(Health(*c), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_TRUE(MetricsContain(*ts, "mk_watchdog_stalls_total 1"));
  engine::testing::EnginePeer::PauseExecution(*ts->engine, false);  // progress resumes by itself
  ASSERT_TRUE(
      engine::testing::WaitUntil([&] { return MetricsContain(*ts, "mk_watchdog_stalled 0"); }));
  EXPECT_EQ(Health(*c), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_TRUE(MetricsContain(*ts, "mk_engine_restarts_total 0"));
}

TEST(WatchdogTest, RecoveryRestartsTheEngineAndFailsInFlightSlots) {
  auto ts = StartWithWatchdog(/*recover=*/true);
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  engine::testing::EnginePeer::PauseExecution(*ts->engine, true);
  auto published = c->Publish(std::vector<client::Slot>(10, client::Slot{}));
  ASSERT_TRUE(published.ok());
  std::vector<uint64_t> tickets;
  for (uint32_t i = 0; i < 10; ++i) tickets.push_back(published->first_ticket + i);
  auto failed = c->Poll(tickets, absl::Seconds(30));
  ASSERT_TRUE(failed.ok()) << failed.status();
  ASSERT_EQ(failed->size(), 10u) << "every in-flight slot reached a terminal outcome";
  for (const auto& completion : *failed) {
    EXPECT_EQ(completion.status, client::Completion::Status::kFault);
    EXPECT_EQ(completion.fault_code, static_cast<uint32_t>(protocol::FaultCode::kEngineRestart));
  }
  EXPECT_TRUE(MetricsContain(*ts, "mk_engine_restarts_total 1"));
  EXPECT_TRUE(MetricsContain(*ts, "mk_watchdog_stalls_total 1"));
  ASSERT_TRUE(engine::testing::WaitUntil(
      [&] { return Health(*c) == grpc::health::v1::HealthCheckResponse::SERVING; }));
  auto after = c->Publish({client::Slot{}}, absl::Seconds(10));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->completions.size(), 1u) << "the restarted engine runs new work";
}

// A server over a CPU engine with one worker and a resource root, whose watchdog samples every
// `interval` and calls four samples without progress a stall, and recovers by restarting.
std::unique_ptr<TestServer> StartWithResources(const std::string& root, absl::Duration interval) {
  server::ServerOptions so;
  so.watchdog.interval = interval;
  so.watchdog.stall_intervals = 4;  // a 200 ms window: robust on a loaded 2-core machine
  so.watchdog.recover = true;
  engine::EngineOptions eo = testing::TestEngineOptions();
  eo.resource_root = root;
  eo.tenant_residency_bytes = 0;
  return TestServer::Start(so, eo);
}

// 1024 CHECKSUMs of a 4 MiB resource in one claimed batch take half a second or more on one
// worker, longer than the 200 ms stall window, before the batch's DONE_COUNT moves: each slot's
// hashed bytes count as progress, so there is no false stall and no ENGINE_RESTART.
TEST(WatchdogTest, ALongChecksumBatchIsProgressNotAStall) {
  const testing::ScopedTempDir root("mk_watchdog");
  root.WriteFile("tenants/0/big.bin", testing::RandomBytes(4 << 20, 3));
  auto ts = StartWithResources(root.path().string(), absl::Milliseconds(50));
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  auto id = ts->engine->RegisterResource(0, "big.bin", 0, 0);
  ASSERT_TRUE(id.ok()) << id.status();
  auto loaded = c->Publish({client::Slot{0xFFFD, 2, {*id, 0}}}, absl::Seconds(30));
  ASSERT_TRUE(loaded.ok() && loaded->completions.size() == 1);
  auto sums = c->Publish(std::vector<client::Slot>(1024, client::Slot{0xFFF0, 2, {*id, 0, 0, 0}}),
                         absl::Seconds(120));
  ASSERT_TRUE(sums.ok()) << sums.status();
  ASSERT_EQ(sums->completions.size(), 1024u);
  for (const auto& done : sums->completions) {
    ASSERT_EQ(done.status, client::Completion::Status::kDone) << "fault " << done.fault_code;
  }
  EXPECT_TRUE(MetricsContain(*ts, "mk_watchdog_stalls_total 0"));
  EXPECT_TRUE(MetricsContain(*ts, "mk_engine_restarts_total 0"));
}

// One LOAD_MISS of a 256 MiB file waits on io longer than the 200 ms stall window (about 260 ms
// here; the bytes land in bursts of the reader's 32 staging buffers, about every 35 ms): the
// bytes landing are progress, so the load completes without a restart.
TEST(WatchdogTest, ALongLoadIsProgressNotAStall) {
  const testing::ScopedTempDir root("mk_watchdog");
  root.WriteFile("tenants/0/huge.bin", std::string(256u << 20, 'h'));
  auto ts = StartWithResources(root.path().string(), absl::Milliseconds(50));
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  auto id = ts->engine->RegisterResource(0, "huge.bin", 0, 0);
  ASSERT_TRUE(id.ok()) << id.status();
  auto loaded = c->Publish({client::Slot{0xFFFD, 2, {*id, 0}}}, absl::Seconds(120));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->completions.size(), 1u);
  EXPECT_EQ(loaded->completions[0].status, client::Completion::Status::kDone)
      << "fault " << loaded->completions[0].fault_code;
  EXPECT_TRUE(MetricsContain(*ts, "mk_watchdog_stalls_total 0"));
  EXPECT_TRUE(MetricsContain(*ts, "mk_engine_restarts_total 0"));
}

// A drain stops the watchdog but /metrics keeps reading it until the server goes: scrapes
// after (and during) a drain read live memory (this was a use-after-free, found by ASan).
TEST(WatchdogTest, MetricsStillReadTheWatchdogAfterADrain) {
  auto ts = StartWithWatchdog(/*recover=*/true);
  ASSERT_NE(ts, nullptr);
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) ts->server->RenderMetrics();
  });
  auto drained = ts->server->DrainAndShutdown(absl::Now() + absl::Seconds(10));
  EXPECT_TRUE(drained.ok()) << drained.status();
  EXPECT_TRUE(MetricsContain(*ts, "mk_watchdog_stalled 0"));
  done = true;
  scraper.join();
}

}  // namespace
}  // namespace mk
