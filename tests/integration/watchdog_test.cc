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
