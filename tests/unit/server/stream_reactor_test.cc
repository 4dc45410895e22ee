// The Stream's flow control over a fake engine that holds every completion: the reactor stops
// reading requests while its slots in flight would pass --stream_max_pending_completions, so
// what a client can pile on the server is bounded, and it reads again once completions drain,
// losing nothing.
#include <thread>

#include "gtest/gtest.h"
#include "server_over_fake_engine.h"

namespace mk::server {
namespace {

class StreamReactorTest : public ServerOverFakeEngine {};

TEST_F(StreamReactorTest, StopsReadingAtTheBoundAndResumesWhenCompletionsDrain) {
  constexpr size_t kMaxPending = 64;
  constexpr int kRequests = 40;
  constexpr uint32_t kSlotsPerRequest = 16;  // above the ping-pong size (read after a reply)
  constexpr uint64_t kSlots = uint64_t{kRequests} * kSlotsPerRequest;
  ServerOptions options;
  options.stream_max_pending_completions = kMaxPending;
  StartServer(options);
  const uint64_t before = engine_.published_slots();  // the server's start-up round trip
  engine_.set_mode(mk::testing::FakeEngine::Mode::kHold);
  auto c = NewClient();
  auto stream = c->OpenStream();
  for (int r = 0; r < kRequests; ++r) {
    v1::PublishRequest request;
    request.set_request_id(r);
    for (uint32_t s = 0; s < kSlotsPerRequest; ++s) {
      request.mutable_slots()->add_slots()->add_args(r * kSlotsPerRequest + s);
    }
    ASSERT_TRUE(stream->Write(request));  // buffered by gRPC: the server reads at its pace
  }
  // The reactor reads until its slots in flight pass the bound, then waits for completions.
  ASSERT_TRUE(engine_.WaitForPublished(before + kMaxPending));
  EXPECT_LT(engine_.published_slots() - before, kSlots) << "not everything was read";
  // Completions flow again: the reactor resumes reading, and every slot completes.
  engine_.set_mode(mk::testing::FakeEngine::Mode::kCompleteAtOnce);
  engine_.ReleaseHeld();
  ASSERT_TRUE(stream->WritesDone());
  std::vector<bool> seen(kSlots, false);
  uint64_t completions = 0, acks = 0;
  v1::CompletionBatch batch;
  while (stream->Read(&batch)) {
    for (const v1::PublishAck& ack : batch.acks()) {
      EXPECT_EQ(ack.error_code(), 0) << ack.error_message();
      ++acks;
    }
    for (const v1::Completion& completion : batch.completions()) {
      ASSERT_EQ(completion.status(), v1::COMPLETION_STATUS_DONE);
      const uint32_t slot = completion.result(0);
      ASSERT_LT(slot, kSlots);
      EXPECT_FALSE(seen[slot]) << "slot " << slot << " completed twice";
      seen[slot] = true;
      ++completions;
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(acks, static_cast<uint64_t>(kRequests));
  EXPECT_EQ(completions, kSlots) << "nothing is lost across the pause";
  // The bound: a request is read only while the slots in flight are within it, and at most two
  // read requests wait to be published.
  EXPECT_LE(engine_.max_in_flight_at_publish(), kMaxPending + size_t{2} * kSlotsPerRequest);
}

}  // namespace
}  // namespace mk::server
