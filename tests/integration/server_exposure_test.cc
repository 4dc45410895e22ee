// Exposure and gRPC hygiene: development mode stays on loopback, made-up method names never
// become metric labels, errors carry google.rpc details and gRPC's retry pushback, message
// sizes follow the option.
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc_health_v1.grpc.pb.h"
#include "gtest/gtest.h"
#include "support/test_server.h"

namespace mk {
namespace {

using client::Slot;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::TestServer;

TEST(ServerExposureTest, DevelopmentModeRefusesNonLoopbackAddresses) {
  auto engine = *engine::CreateEngine(testing::TestEngineOptions());
  ASSERT_TRUE(engine->Start().ok());
  server::ServerOptions so;
  so.listen = "0.0.0.0:0";
  auto refused = server::Server::Create(so, engine.get());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("--allow_development_mode_off_loopback"));
  so.allow_development_mode_off_loopback = true;
  EXPECT_TRUE(server::Server::Create(so, engine.get()).ok()) << "explicitly allowed";
  so.allow_development_mode_off_loopback = false;
  so.listen = "[::1]:0";
  auto v6 = server::Server::Create(so, engine.get());
  EXPECT_NE(v6.status().code(), absl::StatusCode::kFailedPrecondition) << "::1 is loopback";
}

// 300 calls to methods that do not exist add one label value, "unknown", not 300.
TEST(ServerExposureTest, MadeUpMethodNamesNeverBecomeLabels) {
  auto ts = TestServer::Start();
  ASSERT_NE(ts, nullptr);
  auto channel = grpc::CreateChannel(ts->target(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  for (int i = 0; i < 300; ++i) {
    grpc::ClientContext ctx;
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1), response;  // an empty message (a default one is invalid)
    grpc::Status status;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    stub.UnaryCall(&ctx, "/mk.v1.Megakernel/MadeUp" + std::to_string(i), grpc::StubOptions(),
                   &request, &response, [&](const grpc::Status& s) {
                     std::lock_guard<std::mutex> lock(mu);
                     status = s;
                     done = true;
                     cv.notify_all();
                   });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
    ASSERT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  ASSERT_TRUE(ts->Client()->Publish({Slot{}}).ok());
  const std::string metrics = ts->server->RenderMetrics();
  EXPECT_THAT(metrics, Not(HasSubstr("MadeUp")));
  EXPECT_THAT(metrics, HasSubstr("method=\"unknown\""));
  EXPECT_THAT(metrics, HasSubstr("method=\"/mk.v1.Megakernel/Publish\""));
}

// RESOURCE_EXHAUSTED carries grpc-retry-pushback-ms and google.rpc details (ErrorInfo with a
// reason, RetryInfo with the delay).
TEST(ServerExposureTest, ErrorsCarryRichDetailsAndRetryPushback) {
  engine::EngineOptions eo = testing::TestEngineOptions();
  eo.max_stored_completions = 5;
  auto ts = TestServer::Start({}, eo);
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  ASSERT_TRUE(c->Publish(std::vector<Slot>(5, Slot{})).ok());
  v1::PublishRequest req;
  req.mutable_slots()->add_slots();
  auto ctx = c->NewContext(absl::Seconds(10));
  v1::PublishResponse resp;
  grpc::Status s = c->megakernel()->Publish(ctx.get(), req, &resp);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  const auto& trailers = ctx->GetServerTrailingMetadata();
  auto pushback = trailers.find("grpc-retry-pushback-ms");
  ASSERT_NE(pushback, trailers.end());
  EXPECT_EQ(std::string(pushback->second.data(), pushback->second.size()), "1");
  google::rpc::Status details;
  ASSERT_TRUE(details.ParseFromString(s.error_details()));
  EXPECT_EQ(details.code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  bool saw_info = false, saw_retry = false;
  for (const auto& any : details.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::RetryInfo retry;
    if (any.UnpackTo(&info)) {
      saw_info = true;
      EXPECT_EQ(info.reason(), "RESOURCE_EXHAUSTED");
      EXPECT_EQ(info.domain(), "megakerneld");
    } else if (any.UnpackTo(&retry)) {
      saw_retry = true;
      EXPECT_EQ(retry.retry_delay().nanos(), 1000000);
    }
  }
  EXPECT_TRUE(saw_info);
  EXPECT_TRUE(saw_retry);
}

// The message size limit is an option: a request larger than it is refused by gRPC itself.
TEST(ServerExposureTest, MessageSizeFollowsTheOption) {
  server::ServerOptions so;
  so.max_message_bytes = 1 << 20;
  auto ts = TestServer::Start(so);
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  EXPECT_TRUE(c->Echo(std::string(512 << 10, 'x')).ok());
  EXPECT_EQ(c->Echo(std::string(2 << 20, 'x')).status().code(),
            absl::StatusCode::kResourceExhausted);
}

// Whether a client pinging every `ping_every` between calls keeps its connection for `watch`:
// false once the server answered the pings with GOAWAY too_many_pings (the channel leaves
// READY).
bool KeepsConnectionWhilePinging(const TestServer& ts, absl::Duration ping_every,
                                 absl::Duration watch) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(absl::ToInt64Milliseconds(ping_every)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // keep pinging without calls
  auto channel = grpc::CreateCustomChannel(ts.target(), grpc::InsecureChannelCredentials(), args);
  EXPECT_TRUE(channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10))));
  // No sleep: this returns at once when the state changes, else when `watch` has passed.
  return !channel->WaitForStateChange(GRPC_CHANNEL_READY, absl::ToChronoTime(absl::Now() + watch));
}

// Keepalive enforcement is an option: clients pinging between calls at the allowed interval
// keep their connection (gRPC's default policy, also what a zero option leaves in place, sends
// GOAWAY after the third ping within five minutes); faster ones are still sent away.
TEST(ServerExposureTest, KeepalivePingsAtTheAllowedIntervalKeepTheConnection) {
  server::ServerOptions allowed;
  allowed.keepalive_min_ping_interval = absl::Milliseconds(100);
  auto ts = TestServer::Start(allowed);
  ASSERT_NE(ts, nullptr);
  EXPECT_TRUE(KeepsConnectionWhilePinging(*ts, absl::Milliseconds(300), absl::Seconds(2)));

  server::ServerOptions strict;  // pings every 300 ms against 10 s allowed: GOAWAY
  strict.keepalive_min_ping_interval = absl::Seconds(10);
  auto strict_ts = TestServer::Start(strict);
  ASSERT_NE(strict_ts, nullptr);
  EXPECT_FALSE(KeepsConnectionWhilePinging(*strict_ts, absl::Milliseconds(300), absl::Seconds(10)));

  server::ServerOptions grpc_default;  // the policy before the option existed
  grpc_default.keepalive_min_ping_interval = absl::ZeroDuration();
  auto default_ts = TestServer::Start(grpc_default);
  ASSERT_NE(default_ts, nullptr);
  EXPECT_FALSE(
      KeepsConnectionWhilePinging(*default_ts, absl::Milliseconds(300), absl::Seconds(10)));
}

using Serving = grpc::health::v1::HealthCheckResponse;
Serving::ServingStatus Health(client::Client& c, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(c.channel());
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  Serving resp;
  if (!stub->Check(&ctx, req, &resp).ok()) return Serving::UNKNOWN;
  return resp.status();
}

// Readiness turns NOT_SERVING when a drain begins; liveness stays SERVING (a draining pod is not
// killed for it).
TEST(ServerExposureTest, LivenessStaysServingWhileReadinessDrains) {
  auto ts = TestServer::Start();
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  EXPECT_EQ(Health(*c, "mk.v1.Megakernel.Readiness"), Serving::SERVING);
  EXPECT_EQ(Health(*c, "mk.v1.Megakernel.Liveness"), Serving::SERVING);
  ASSERT_TRUE(c->Drain().ok());
  EXPECT_EQ(Health(*c, "mk.v1.Megakernel.Readiness"), Serving::NOT_SERVING);
  EXPECT_EQ(Health(*c, ""), Serving::NOT_SERVING);
  EXPECT_EQ(Health(*c, "mk.v1.Megakernel.Liveness"), Serving::SERVING);
}

// An idle WatchTelemetry stream (one snapshot an hour) ends when the drain begins, so the
// shutdown finishes at once instead of at the drain deadline.
TEST(ServerExposureTest, ADrainEndsWatchStreams) {
  auto ts = TestServer::Start();
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  grpc::ClientContext ctx;
  v1::WatchTelemetryRequest req;
  req.mutable_interval()->set_seconds(3600);
  auto reader = c->megakernel()->WatchTelemetry(&ctx, req);
  v1::Telemetry first;
  ASSERT_TRUE(reader->Read(&first)) << "the first snapshot comes at once";
  const absl::Time start = absl::Now();
  std::thread drain(
      [&] { EXPECT_TRUE(ts->server->DrainAndShutdown(absl::Now() + absl::Minutes(10)).ok()); });
  v1::Telemetry more;
  EXPECT_FALSE(reader->Read(&more));
  EXPECT_TRUE(reader->Finish().ok()) << "ended cleanly by the drain";
  drain.join();
  ts->server->Wait();
  EXPECT_LT(absl::Now() - start, absl::Seconds(60)) << "not the 10-minute drain deadline";
}

// A telemetry request names at most 64 window opcodes: a 100k list (1.2 s of CPU on a gRPC
// thread per call) is refused at once.
TEST(ServerExposureTest, LongWindowOpcodeListsAreRefused) {
  auto ts = TestServer::Start();
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  std::vector<uint32_t> many(100000);
  for (uint32_t i = 0; i < many.size(); ++i) many[i] = i;
  const absl::Time start = absl::Now();
  auto refused = c->GetTelemetry(many);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("at most 64"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_TRUE(c->GetTelemetry(std::vector<uint32_t>(64, 1)).ok());
}

// A tenant holds at most max_streams_per_tenant open streams; a closed one gives its place back.
TEST(ServerExposureTest, OpenStreamsAreLimitedPerTenant) {
  server::ServerOptions so;
  so.max_streams_per_tenant = 2;
  auto ts = TestServer::Start(so);
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  struct OpenStream {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<v1::PublishRequest, v1::CompletionBatch>> rw;
  };
  auto open = [&](OpenStream* s) {
    s->rw = c->megakernel()->Stream(&s->ctx);
    v1::PublishRequest req;
    req.mutable_slots()->add_slots();
    v1::CompletionBatch ack;
    return s->rw->Write(req) && s->rw->Read(&ack);  // accepted by the server
  };
  OpenStream a, b, refused;
  ASSERT_TRUE(open(&a));
  ASSERT_TRUE(open(&b));
  EXPECT_FALSE(open(&refused));
  grpc::Status s = refused.rw->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("--max_streams_per_tenant"));
  a.rw->WritesDone();
  v1::CompletionBatch rest;
  while (a.rw->Read(&rest)) {
  }
  ASSERT_TRUE(a.rw->Finish().ok());
  // The place comes back when the server deletes the finished stream's reactor.
  bool reopened = false;
  for (int attempt = 0; attempt < 1000 && !reopened; ++attempt) {
    auto* s2 = new OpenStream;
    reopened = open(s2);
    if (!reopened) s2->rw->Finish();
    if (reopened) {
      s2->rw->WritesDone();
      while (s2->rw->Read(&rest)) {
      }
      EXPECT_TRUE(s2->rw->Finish().ok());
    }
    delete s2;
  }
  EXPECT_TRUE(reopened);
  b.rw->WritesDone();
  while (b.rw->Read(&rest)) {
  }
  EXPECT_TRUE(b.rw->Finish().ok());
}

}  // namespace
}  // namespace mk
