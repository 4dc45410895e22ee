// The C++ client: its retry policy against a scripted gRPC server (transient answers are retried
// with backoff up to max_attempts, anything else is returned at once), and its packed forms.
#include "mk/client/client.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/proto/packed_codec.h"

namespace mk::client {
namespace {

using ::testing::HasSubstr;

// A Megakernel service whose Publish answers from a script (then OK with ticket 1), counting
// the calls it received.
class ScriptedService final : public v1::Megakernel::Service {
 public:
  void Script(std::deque<grpc::StatusCode> answers) {
    std::lock_guard<std::mutex> lock(mu_);
    answers_ = std::move(answers);
  }
  int calls() const { return calls_.load(); }
  grpc::Status Publish(grpc::ServerContext*, const v1::PublishRequest* request,
                       v1::PublishResponse* response) override {
    ++calls_;
    std::lock_guard<std::mutex> lock(mu_);
    if (!answers_.empty()) {
      const grpc::StatusCode code = answers_.front();
      answers_.pop_front();
      return grpc::Status(code, absl::StrCat("scripted answer ", static_cast<int>(code)));
    }
    response->set_first_ticket(1);
    response->set_count(request->slots().slots_size());
    return grpc::Status::OK;
  }

 private:
  std::mutex mu_;
  std::deque<grpc::StatusCode> answers_;  // guarded by mu_
  std::atomic<int> calls_{0};
};

class ClientRetryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override { server_->Shutdown(); }
  std::unique_ptr<Client> NewClient(int max_attempts) {
    ClientOptions o;
    o.target = absl::StrCat("127.0.0.1:", port_);
    o.max_attempts = max_attempts;
    o.initial_backoff = absl::Microseconds(100);
    o.max_backoff = absl::Milliseconds(1);
    return *Client::Create(o);
  }

  ScriptedService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(ClientRetryTest, TransientAnswersAreRetriedUntilOneSucceeds) {
  service_.Script({grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::RESOURCE_EXHAUSTED,
                   grpc::StatusCode::UNAVAILABLE});
  auto r = NewClient(6)->Publish({Slot{}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first_ticket, 1u);
  EXPECT_EQ(service_.calls(), 4);
}

TEST_F(ClientRetryTest, GivesUpAfterMaxAttemptsWithTheLastAnswer) {
  service_.Script({grpc::StatusCode::RESOURCE_EXHAUSTED, grpc::StatusCode::RESOURCE_EXHAUSTED,
                   grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::UNAVAILABLE});
  auto r = NewClient(3)->Publish({Slot{}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("scripted answer"));
  EXPECT_EQ(service_.calls(), 3);
}

TEST_F(ClientRetryTest, OtherErrorsAreReturnedAtOnce) {
  for (grpc::StatusCode code :
       {grpc::StatusCode::INVALID_ARGUMENT, grpc::StatusCode::FAILED_PRECONDITION,
        grpc::StatusCode::UNAUTHENTICATED}) {
    const int before = service_.calls();
    service_.Script({code});
    auto r = NewClient(6)->Publish({Slot{}});
    EXPECT_EQ(static_cast<int>(r.status().code()), static_cast<int>(code));
    EXPECT_EQ(service_.calls() - before, 1) << "not retried: " << static_cast<int>(code);
  }
}

TEST(ClientPackedTest, EncodePackedWritesTheSlotLayout) {
  const std::string packed = EncodePacked({Slot{2, 1, {5, 6}}, Slot{3, 4, {}}});
  ASSERT_EQ(packed.size(), 2 * proto::kPackedBytes);
  const proto::PackedSlot first = proto::DecodePackedSlot(packed.data());
  EXPECT_EQ(first.opcode, 2u);
  EXPECT_EQ(first.priority, 1u);
  EXPECT_EQ(first.args[0], 5u);
  EXPECT_EQ(first.args[1], 6u);
  EXPECT_EQ(proto::DecodePackedSlot(packed.data() + proto::kPackedBytes).priority, 4u);
}

TEST(ClientPackedTest, DecodePackedCompletionsMapsEveryStatusAndRejectsCorruption) {
  std::string packed(3 * proto::kPackedBytes, '\0');
  proto::PackedCompletion done{11, proto::PackedStatus::kDone, {7, 8}};
  proto::PackedCompletion fault{12, proto::PackedStatus::kFault, {2, 100}};
  proto::PackedCompletion cancelled{13, proto::PackedStatus::kCancelled, {}};
  proto::EncodePackedCompletion(done, packed.data());
  proto::EncodePackedCompletion(fault, packed.data() + proto::kPackedBytes);
  proto::EncodePackedCompletion(cancelled, packed.data() + 2 * proto::kPackedBytes);
  auto decoded = DecodePackedCompletions(packed);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->size(), 3u);
  EXPECT_EQ((*decoded)[0].status, Completion::Status::kDone);
  EXPECT_EQ((*decoded)[0].ticket, 11u);
  ASSERT_EQ((*decoded)[0].results.size(), 12u);
  EXPECT_EQ((*decoded)[0].results[1], 8u);
  EXPECT_EQ((*decoded)[1].status, Completion::Status::kFault);
  EXPECT_EQ((*decoded)[1].fault_code, 2u);
  EXPECT_EQ((*decoded)[1].fault_detail, 100u);
  EXPECT_EQ((*decoded)[2].status, Completion::Status::kCancelled);
  EXPECT_EQ(DecodePackedCompletions(packed.substr(1)).status().code(), absl::StatusCode::kDataLoss);
  packed[proto::kPackedBytes] = 9;  // record 1's STATUS word
  EXPECT_EQ(DecodePackedCompletions(packed).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace mk::client
