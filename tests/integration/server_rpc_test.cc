// Every RPC of megakerneld through the C++ client, every validation error, health, reflection.
#include <filesystem>
#include <fstream>
#include <thread>

#include "gmock/gmock.h"
#include "grpc_health_v1.grpc.pb.h"
#include "gtest/gtest.h"
#include "support/temp_files.h"
#include "support/test_server.h"

namespace mk {
namespace {

using client::Completion;
using client::Slot;
using ::testing::HasSubstr;
using testing::TestServer;

class ServerRpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ts_ = TestServer::Start();
    ASSERT_NE(ts_, nullptr);
    c_ = ts_->Client();
  }
  std::unique_ptr<TestServer> ts_;
  std::unique_ptr<client::Client> c_;
};

TEST_F(ServerRpcTest, PublishTypedWithWaitReturnsResults) {
  auto r =
      c_->Publish({Slot{2, 2, {5, 3}}, Slot{2, 2, {5, 3}}, Slot{3, 2, {3}}}, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->count, 3u);
  ASSERT_EQ(r->completions.size(), 3u);
  EXPECT_EQ(r->completions[0].ticket, r->first_ticket);
  EXPECT_EQ(r->completions[1].results[0], 5u) << "second ATOMIC_ADD sees the first";
  EXPECT_EQ(r->completions[2].results[0], 10u);
}

TEST_F(ServerRpcTest, PublishPackedThenPoll) {
  std::vector<Slot> slots(100, Slot{2, 2, {1, 7}});
  auto r = c_->PublishPacked(client::EncodePacked(slots));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->completions.empty()) << "no wait: tickets only";
  std::vector<uint64_t> tickets;
  for (uint32_t i = 0; i < r->count; ++i) tickets.push_back(r->first_ticket + i);
  auto got = c_->Poll(tickets, absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 100u);
  std::vector<uint32_t> previous;
  for (const Completion& c : *got) previous.push_back(c.results[0]);
  std::sort(previous.begin(), previous.end());
  for (uint32_t i = 0; i < 100; ++i) EXPECT_EQ(previous[i], i) << "every add ran exactly once";
  // A completion is collected once: polling it again says so at once (not after the wait).
  auto again = c_->Poll(tickets, absl::Seconds(30));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(again.status().message()), ::testing::HasSubstr("is not pending"));
  // Also while another completion is owed to the tenant (stored, not collected yet).
  auto owed = c_->Publish({Slot{}});
  ASSERT_TRUE(owed.ok()) << owed.status();
  // The first Poll's answer can reach this client a moment before the server settles what it
  // collected: a short wait that runs out meanwhile answers OK with nothing, then NOT_FOUND.
  absl::StatusOr<std::vector<Completion>> while_owed;
  for (int attempt = 0; attempt < 20; ++attempt) {
    while_owed = c_->Poll(tickets, absl::Milliseconds(500));
    if (!while_owed.ok()) break;
    EXPECT_TRUE(while_owed->empty());
  }
  EXPECT_EQ(while_owed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(while_owed.status().message()),
              ::testing::HasSubstr("was collected already"));
  auto collected = c_->Poll({owed->first_ticket}, absl::Seconds(10));
  ASSERT_TRUE(collected.ok()) << collected.status();
  EXPECT_EQ(collected->size(), 1u);
}

TEST_F(ServerRpcTest, StreamTypedAndPacked) {
  for (bool packed : {false, true}) {
    auto s = c_->OpenStream();
    for (uint64_t id = 1; id <= 3; ++id) {
      v1::PublishRequest req;
      req.set_request_id(id);
      if (packed) {
        req.set_packed_slots(client::EncodePacked(std::vector<Slot>(10, Slot{0, 2, {}})));
      } else {
        for (int i = 0; i < 10; ++i) req.mutable_slots()->add_slots()->set_opcode(0);
      }
      ASSERT_TRUE(s->Write(req));
    }
    v1::PublishRequest bad;
    bad.set_request_id(4);
    bad.mutable_slots()->add_slots()->set_opcode(4242);
    ASSERT_TRUE(s->Write(bad));
    ASSERT_TRUE(s->WritesDone());
    size_t completions = 0;
    std::vector<v1::PublishAck> acks;
    v1::CompletionBatch batch;
    while (s->Read(&batch)) {
      if (packed) {
        auto decoded = client::DecodePackedCompletions(batch.packed_completions());
        ASSERT_TRUE(decoded.ok());
        for (const Completion& c : *decoded) EXPECT_EQ(c.status, Completion::Status::kDone);
        completions += decoded->size();
        EXPECT_EQ(batch.completions_size(), 0);
      } else {
        completions += batch.completions_size();
      }
      acks.insert(acks.end(), batch.acks().begin(), batch.acks().end());
    }
    EXPECT_TRUE(s->Finish().ok());
    EXPECT_EQ(completions, 30u) << (packed ? "packed" : "typed");
    ASSERT_EQ(acks.size(), 4u);
    for (const auto& ack : acks) {
      if (ack.request_id() == 4) {
        EXPECT_EQ(ack.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
        EXPECT_THAT(ack.error_message(), HasSubstr("slot 0: opcode 4242"));
      } else {
        EXPECT_EQ(ack.count(), 10u);
      }
    }
  }
}

// The server reads ahead while it publishes (StreamReactor): a burst of requests must still be
// published in the order sent, so acks come back in request order with increasing tickets.
TEST_F(ServerRpcTest, StreamPublishesRequestsInOrder) {
  auto s = c_->OpenStream();
  constexpr uint64_t kRequests = 200;
  for (uint64_t id = 1; id <= kRequests; ++id) {
    v1::PublishRequest req;
    req.set_request_id(id);
    req.set_packed_slots(client::EncodePacked(std::vector<Slot>(1 + id % 7, Slot{0, 2, {}})));
    ASSERT_TRUE(s->Write(req));
  }
  ASSERT_TRUE(s->WritesDone());
  std::vector<v1::PublishAck> acks;
  size_t completions = 0;
  v1::CompletionBatch batch;
  while (s->Read(&batch)) {
    acks.insert(acks.end(), batch.acks().begin(), batch.acks().end());
    auto decoded = client::DecodePackedCompletions(batch.packed_completions());
    ASSERT_TRUE(decoded.ok());
    completions += decoded->size();
  }
  EXPECT_TRUE(s->Finish().ok());
  ASSERT_EQ(acks.size(), kRequests);
  size_t expected = 0;
  for (uint64_t i = 0; i < kRequests; ++i) {
    EXPECT_EQ(acks[i].request_id(), i + 1);
    EXPECT_EQ(acks[i].error_code(), 0) << acks[i].error_message();
    EXPECT_EQ(acks[i].count(), 1 + (i + 1) % 7);
    if (i > 0) {
      EXPECT_EQ(acks[i].first_ticket(), acks[i - 1].first_ticket() + acks[i - 1].count())
          << "request " << i + 1 << " was published out of order";
    }
    expected += acks[i].count();
  }
  EXPECT_EQ(completions, expected);
}

TEST_F(ServerRpcTest, TelemetryAndWatch) {
  ASSERT_TRUE(c_->Publish(std::vector<Slot>(20, Slot{}), absl::Seconds(10)).ok());
  auto t = c_->GetTelemetry();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->engine().backend(), "cpu");
  EXPECT_EQ(t->occupancy().total(), 1u << 14);
  EXPECT_GE(t->done_count(), 21u) << "20 NOPs + the startup round trip";
  EXPECT_EQ(t->priority_fairness_size(), 5);
  auto ctx = c_->NewContext(absl::Seconds(10));
  v1::WatchTelemetryRequest req;
  req.mutable_interval()->set_nanos(20'000'000);
  auto reader = c_->megakernel()->WatchTelemetry(ctx.get(), req);
  v1::Telemetry a, b;
  ASSERT_TRUE(reader->Read(&a));
  ASSERT_TRUE(c_->Publish(std::vector<Slot>(5, Slot{}), absl::Seconds(10)).ok());
  ASSERT_TRUE(reader->Read(&b));
  while (b.done_count() < a.done_count() + 5) ASSERT_TRUE(reader->Read(&b));
  ctx->TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(ServerRpcTest, ValidationErrorsNameSlotAndField) {
  auto expect = [&](const absl::StatusOr<client::PublishResult>& r, const std::string& needle) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_THAT(r.status().message(), HasSubstr(needle));
  };
  expect(c_->Publish({Slot{}, Slot{0, 2, std::vector<uint32_t>(13, 1)}}),
         "slot 1: args has 13 words");
  expect(c_->PublishPacked(std::string(100, '\0')), "100 bytes is not a whole number");
  expect(c_->Publish({}), "no slots");
  expect(c_->Publish({Slot{}, Slot{}, Slot{77777}}), "slot 2: opcode 77777");
  expect(c_->Publish({Slot{0, 9, {}}}), "slot 0: priority 9");
  expect(c_->Publish({Slot{7, 2, {3, 0}}}), "BATCH_FENCE count");
  expect(c_->Publish({Slot{0xFFFFFFFFu}}), "admin-only");
  EXPECT_THAT(c_->Poll({}, absl::ZeroDuration()).status().message(), HasSubstr("no tickets"));
  EXPECT_THAT(c_->Poll(std::vector<uint64_t>{999999}, absl::ZeroDuration()).status().message(),
              HasSubstr("never issued"));
  v1::ListResourcesResponse resources;
  grpc::Status no_root =
      c_->megakernel()->ListResources(c_->NewContext(absl::Seconds(5)).get(), {}, &resources);
  EXPECT_EQ(no_root.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(no_root.error_message(), HasSubstr("--resource_root"));
}

TEST_F(ServerRpcTest, EchoBaselines) {
  EXPECT_EQ(*c_->Echo("ping"), "ping");
  grpc::ClientContext ctx;
  auto s = c_->diagnostics()->EchoStream(&ctx);
  v1::EchoRequest req;
  v1::EchoResponse resp;
  for (int i = 0; i < 3; ++i) {
    req.set_payload(std::string(i + 1, 'a'));
    ASSERT_TRUE(s->Write(req));
    ASSERT_TRUE(s->Read(&resp));
    EXPECT_EQ(resp.payload(), req.payload());
  }
  s->WritesDone();
  EXPECT_TRUE(s->Finish().ok());
}

TEST_F(ServerRpcTest, HealthServingThenNotServingDuringDrain) {
  auto health = grpc::health::v1::Health::NewStub(c_->channel());
  for (const char* service : {"", "mk.v1.Megakernel"}) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  auto drained = c_->Drain();
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(drained->accepted(), drained->done());
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("mk.v1.Megakernel");
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(c_->Publish({Slot{}}).status().code(), absl::StatusCode::kUnavailable);
}

TEST(ServerResourcesTest, RegisterLoadChecksumListEvictOverGrpc) {
  const testing::ScopedTempDir root("mk_server_resources");
  root.WriteFile("tenants/0/weights.bin", std::string(200000, 'w'));
  engine::EngineOptions eo = testing::TestEngineOptions();
  eo.resource_root = root.path().string();
  auto ts = TestServer::Start({}, eo);
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  v1::RegisterResourceRequest reg;
  reg.set_path("weights.bin");
  v1::RegisterResourceResponse id;
  ASSERT_TRUE(
      c->megakernel()->RegisterResource(c->NewContext(absl::Seconds(5)).get(), reg, &id).ok());
  auto loaded = c->Publish({Slot{0xFFFD, 2, {id.resource_id(), 0}}}, absl::Seconds(30));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->completions.size(), 1u);
  EXPECT_EQ(loaded->completions[0].status, Completion::Status::kDone);
  EXPECT_EQ(loaded->completions[0].results[0], 200000u);
  auto sum = c->Publish({Slot{0xFFF0, 2, {id.resource_id(), 0, 0, 0}}}, absl::Seconds(30));
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(sum->completions[0].results[2], 4u) << "200000 bytes = 4 blocks of 64 KiB";
  v1::ListResourcesResponse listed;
  ASSERT_TRUE(
      c->megakernel()->ListResources(c->NewContext(absl::Seconds(5)).get(), {}, &listed).ok());
  ASSERT_EQ(listed.resources_size(), 1);
  EXPECT_TRUE(listed.resources(0).resident());
  EXPECT_THAT(ts->server->RenderMetrics(), HasSubstr("mk_io_requests_total{result=\"ok\"} 1"));
  v1::EvictResourceRequest evict;
  evict.set_resource_id(id.resource_id());
  v1::EvictResourceResponse evicted;
  EXPECT_TRUE(
      c->megakernel()->EvictResource(c->NewContext(absl::Seconds(5)).get(), evict, &evicted).ok());
  reg.set_path("../escape");
  EXPECT_EQ(c->megakernel()
                ->RegisterResource(c->NewContext(absl::Seconds(5)).get(), reg, &id)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace mk
