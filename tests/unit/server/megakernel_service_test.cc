// mk.v1.Megakernel over a fake engine: the engine's errors reach the client with their code,
// message and retry hint; a caller without a valid token never reaches the engine; a publish
// that waits returns its completions in ticket order.
#include <grpcpp/grpcpp.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_over_fake_engine.h"
#include "support/temp_files.h"

namespace mk::server {
namespace {

using ::testing::HasSubstr;

class MegakernelServiceTest : public ServerOverFakeEngine {};

TEST_F(MegakernelServiceTest, EngineErrorsReachTheClientWithCodeAndMessage) {
  StartServer();
  auto c = NewClient();
  const absl::Status errors[] = {
      absl::ResourceExhaustedError("ring: the NORMAL partition is full; retry after about 50us"),
      absl::FailedPreconditionError("engine: tenant 0 is disabled"),
      absl::UnavailableError("engine: draining"),
      absl::InvalidArgumentError("publish: slot 3: opcode 77 has no handler"),
  };
  for (const absl::Status& error : errors) {
    engine_.FailNextPublish(error);
    auto r = c->Publish({client::Slot{}});
    EXPECT_EQ(r.status().code(), error.code());
    EXPECT_EQ(r.status().message(), error.message());
  }
}

TEST_F(MegakernelServiceTest, RingFullCarriesARetryHintInTrailingMetadata) {
  StartServer();
  auto c = NewClient();
  engine_.FailNextPublish(absl::ResourceExhaustedError("ring: full"));
  v1::PublishRequest request;
  request.mutable_slots()->add_slots();
  v1::PublishResponse response;
  auto context = c->NewContext(absl::Seconds(10));
  const grpc::Status s = c->megakernel()->Publish(context.get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  const auto& trailers = context->GetServerTrailingMetadata();
  auto hint = trailers.find("retry-after-ms");
  ASSERT_NE(hint, trailers.end());
  EXPECT_EQ(std::string(hint->second.data(), hint->second.size()), "1");
}

TEST_F(MegakernelServiceTest, MalformedRequestsAreRejectedBeforeTheEngine) {
  StartServer();
  const uint64_t before = engine_.published_slots();
  auto c = NewClient();
  auto r = c->PublishPacked(std::string(65, '\0'));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("packed_slots: 65 bytes"));
  EXPECT_EQ(engine_.published_slots(), before) << "nothing reached the engine";
}

TEST_F(MegakernelServiceTest, CallersWithoutAValidTokenNeverReachTheEngine) {
  const mk::testing::ScopedTempDir files("mk_service_auth");
  ServerOptions options;
  options.tenants_file = files.WriteFile("tenants.txt", "tenant 2 tenant-two-token\n");
  StartServer(options);
  const uint64_t before = engine_.published_slots();
  EXPECT_EQ(NewClient()->Publish({client::Slot{}}).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(NewClient("wrong-token-here")->Publish({client::Slot{}}).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(engine_.published_slots(), before);
  auto r = NewClient("tenant-two-token")->Publish({client::Slot{}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first_ticket, 1u) << "tenant 2's first ticket";
}

TEST_F(MegakernelServiceTest, PublishWithWaitReturnsEveryCompletionInTicketOrder) {
  StartServer();
  auto c = NewClient();
  std::vector<client::Slot> slots;
  for (uint32_t i = 0; i < 5; ++i) slots.push_back(client::Slot{0, 2, {100 + i}});
  auto r = c->Publish(slots, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->completions.size(), 5u);
  for (uint32_t i = 0; i < 5; ++i) {
    EXPECT_EQ(r->completions[i].ticket, r->first_ticket + i);
    EXPECT_EQ(r->completions[i].results[0], 100 + i) << "the fake echoes the arguments";
  }
}

}  // namespace
}  // namespace mk::server
