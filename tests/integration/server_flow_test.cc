// Backpressure, deadlines, client cancellation and stream flow control.
#include <atomic>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/engine/testing/engine_peer.h"
#include "support/engine_test_util.h"
#include "support/test_server.h"

namespace mk {
namespace {

using client::Completion;
using client::Slot;
using ::testing::HasSubstr;
using testing::TestServer;

// A backlog of NORMAL-priority MEMCPYs over a 64 Ki-word scratch window: hundreds of
// milliseconds of work that keeps a later IDLE slot unclaimed.
engine::EngineOptions BusyEngineOptions() {
  engine::EngineOptions o = testing::TestEngineOptions();
  o.ring_slots = 1 << 16;
  o.scratch_words = 1 << 16;
  o.max_tenants = 4;
  return o;
}
void PublishBacklog(client::Client& c) {
  const std::string memcpy_slots =
      client::EncodePacked(std::vector<Slot>(4000, Slot{5, 2, {0, 1 << 15, 1 << 15}}));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.PublishPacked(memcpy_slots).ok());
}

TEST(ServerFlowTest, StoredCompletionLimitIsBackpressureWithRetryHint) {
  engine::EngineOptions eo = testing::TestEngineOptions();
  eo.max_stored_completions = 50;
  auto ts = TestServer::Start({}, eo);
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  ASSERT_TRUE(c->Publish(std::vector<Slot>(40, Slot{})).ok());
  v1::PublishRequest req;
  for (int i = 0; i < 20; ++i) req.mutable_slots()->add_slots();
  auto ctx = c->NewContext(absl::Seconds(10));
  v1::PublishResponse resp;
  grpc::Status s = c->megakernel()->Publish(ctx.get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("poll them"));
  auto trailer = ctx->GetServerTrailingMetadata().find("retry-after-ms");
  EXPECT_NE(trailer, ctx->GetServerTrailingMetadata().end()) << "retry hint in trailers";
  std::vector<uint64_t> first40;
  for (uint64_t t = 2; t < 42; ++t) first40.push_back(t);  // ticket 1 was the health round trip
  ASSERT_EQ(c->Poll(first40, absl::Seconds(10))->size(), 40u);
  EXPECT_TRUE(c->Publish(std::vector<Slot>(20, Slot{})).ok()) << "accepted again once polled";
}

TEST(ServerFlowTest, DeadlineCancelsUnclaimedSlots) {
  auto ts = TestServer::Start({}, BusyEngineOptions());
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  PublishBacklog(*c);
  const uint64_t ticket = ts->engine->counters().accepted + 1;  // tenant 0's next ticket
  // An IDLE slot behind the backlog, waiting 30 s inside an RPC with a 50 ms deadline.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(50));
  v1::PublishRequest req;
  req.mutable_slots()->add_slots()->set_priority(4);
  req.mutable_wait()->set_seconds(30);
  v1::PublishResponse resp;
  EXPECT_EQ(c->megakernel()->Publish(&ctx, req, &resp).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  auto polled = c->Poll(std::vector<uint64_t>{ticket}, absl::Seconds(60));
  ASSERT_TRUE(polled.ok()) << polled.status();
  ASSERT_EQ(polled->size(), 1u);
  EXPECT_EQ((*polled)[0].status, Completion::Status::kCancelled);
}

TEST(ServerFlowTest, ClientCancellationCancelsUnclaimedSlots) {
  auto ts = TestServer::Start({}, BusyEngineOptions());
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  PublishBacklog(*c);
  const uint64_t accepted = ts->engine->counters().accepted;
  grpc::ClientContext ctx;
  v1::PublishRequest req;
  req.mutable_slots()->add_slots()->set_priority(4);
  req.mutable_wait()->set_seconds(60);
  v1::PublishResponse resp;
  grpc::Status status;
  std::thread call([&] { status = c->megakernel()->Publish(&ctx, req, &resp); });
  // Cancel once the server has accepted the slot.
  ASSERT_TRUE(
      engine::testing::WaitUntil([&] { return ts->engine->counters().accepted > accepted; }));
  ctx.TryCancel();
  call.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  auto polled = c->Poll(std::vector<uint64_t>{accepted + 1}, absl::Seconds(60));
  ASSERT_TRUE(polled.ok()) << polled.status();
  ASSERT_EQ(polled->size(), 1u);
  EXPECT_EQ((*polled)[0].status, Completion::Status::kCancelled);
}

// A Poll holds a completed ticket (collected) and a ticket that cannot complete (execution
// paused). Returns once the server's wait has collected the first (the engine stores nothing).
struct PendingPoll {
  uint64_t done_ticket = 0;
  uint64_t stuck_ticket = 0;
  grpc::ClientContext ctx;
  grpc::Status status;
  std::thread call;
};
void StartPendingPoll(TestServer& ts, client::Client& c, PendingPoll* p) {
  auto first = c.Publish({Slot{}});
  ASSERT_TRUE(first.ok());
  p->done_ticket = first->first_ticket;
  ASSERT_TRUE(
      engine::testing::WaitUntil([&] { return ts.engine->counters().stored_completions == 1; }));
  engine::testing::EnginePeer::PauseExecution(*ts.engine, true);
  auto stuck = c.Publish({Slot{}});
  ASSERT_TRUE(stuck.ok());
  p->stuck_ticket = stuck->first_ticket;
  p->call = std::thread([&c, p] {
    v1::PollRequest req;
    req.add_tickets(p->done_ticket);
    req.add_tickets(p->stuck_ticket);
    req.mutable_wait()->set_seconds(3600);  // an hour
    v1::PollResponse resp;
    p->status = c.megakernel()->Poll(&p->ctx, req, &resp);
  });
  ASSERT_TRUE(
      engine::testing::WaitUntil([&] { return ts.engine->counters().stored_completions == 0; }));
}

// A cancelled Poll ends at once and hands what it collected back: a later Poll gets it.
TEST(ServerFlowTest, ACancelledPollLosesNothing) {
  auto ts = TestServer::Start();
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  PendingPoll p;
  StartPendingPoll(*ts, *c, &p);
  p.ctx.TryCancel();
  p.call.join();
  EXPECT_EQ(p.status.error_code(), grpc::StatusCode::CANCELLED);
  auto again = c->Poll(std::vector<uint64_t>{p.done_ticket}, absl::Seconds(10));
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->size(), 1u) << "the cancelled Poll's collected completion is pollable again";
  EXPECT_EQ((*again)[0].ticket, p.done_ticket);
  engine::testing::EnginePeer::PauseExecution(*ts->engine, false);
}

// Shutting the server down ends an hour-long Poll instead of waiting the hour out.
TEST(ServerFlowTest, AnHourLongPollDoesNotHoldAShutdown) {
  auto ts = TestServer::Start();
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  PendingPoll p;
  StartPendingPoll(*ts, *c, &p);
  const absl::Time start = absl::Now();
  // The stuck slot cannot drain: the drain gives up at its deadline, the shutdown cancels calls.
  EXPECT_FALSE(ts->server->DrainAndShutdown(absl::Now() + absl::Milliseconds(200)).ok());
  ts->server->Wait();
  p.call.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_NE(p.status.error_code(), grpc::StatusCode::OK);
  engine::testing::EnginePeer::PauseExecution(*ts->engine, false);
}

// Poll rejects what can never be answered well: a negative wait, a ticket listed twice.
TEST(ServerFlowTest, PollRejectsNegativeWaitsAndDuplicateTickets) {
  auto ts = TestServer::Start();
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  auto published = c->Publish({Slot{}});
  ASSERT_TRUE(published.ok());
  v1::PollRequest req;
  req.add_tickets(published->first_ticket);
  req.mutable_wait()->set_seconds(-1);
  v1::PollResponse resp;
  grpc::Status s = c->megakernel()->Poll(c->NewContext(absl::Seconds(10)).get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("negative"));
  req.mutable_wait()->set_seconds(30);
  req.add_tickets(published->first_ticket);
  const absl::Time start = absl::Now();
  s = c->megakernel()->Poll(c->NewContext(absl::Seconds(60)).get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("appears twice (index 1)"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "answered at once, not after the wait";
}

TEST(ServerFlowTest, SlowStreamReaderBoundsServerBuffering) {
  server::ServerOptions so;
  so.stream_max_pending_completions = 4096;
  auto ts = TestServer::Start(so);
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  auto s = c->OpenStream();
  v1::PublishRequest req;
  req.set_packed_slots(client::EncodePacked(std::vector<Slot>(1024, Slot{})));
  // Write without reading: the server must stop reading once ~4096 completions wait, so the
  // engine never holds much more than that for this stream.
  std::atomic<int> written{0};
  std::atomic<bool> stop_writing{false};
  std::thread writer([&] {
    for (int i = 0; i < 400 && !stop_writing; ++i) {
      if (!s->Write(req)) return;
      ++written;
    }
  });
  // Wait until the writer is blocked by flow control (it stops making progress).
  int last = -1;
  ASSERT_TRUE(engine::testing::WaitUntil(
      [&] {
        const int now = written.load();
        const bool stalled = now == last && now < 400;
        last = now;
        if (!stalled)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));  // observe progress
        return stalled;
      },
      absl::Seconds(60)));
  const uint64_t accepted = ts->engine->counters().accepted;
  EXPECT_LT(accepted, 400u * 1024) << "the server did not take everything the client wrote";
  EXPECT_LE(ts->engine->counters().in_flight + ts->engine->counters().stored_completions, 8192u);
  // Now read everything: the stream drains and completes.
  stop_writing = true;
  v1::CompletionBatch batch;
  size_t got = 0;
  std::thread reader([&] {
    while (s->Read(&batch)) got += batch.packed_completions().size() / 64;
  });
  writer.join();
  s->WritesDone();
  reader.join();
  EXPECT_TRUE(s->Finish().ok());
  EXPECT_EQ(got, static_cast<size_t>(written.load()) * 1024);
}

// A drain keeps answering Poll, within its flush grace, until the completions stored for Poll
// are collected: a client that published without waiting gets its outcomes even when the
// drain finishes before its Poll arrives (mkctl soak lost such outcomes at every drain).
TEST(ServerFlowTest, ADrainKeepsStoredCompletionsPollableUntilCollected) {
  auto ts = TestServer::Start();
  ASSERT_NE(ts, nullptr);
  auto c = ts->Client();
  std::vector<uint64_t> tickets;
  auto publish = [&] {  // one attempt, no client retries: true while the server accepts
    v1::PublishRequest req;
    for (int i = 0; i < 8; ++i) req.mutable_slots()->add_slots();
    v1::PublishResponse resp;
    const grpc::Status s =
        c->megakernel()->Publish(c->NewContext(absl::Seconds(10)).get(), req, &resp);
    if (!s.ok()) return false;
    for (uint32_t i = 0; i < resp.count(); ++i) tickets.push_back(resp.first_ticket() + i);
    return true;
  };
  ASSERT_TRUE(publish());
  absl::StatusOr<engine::EngineCounters> drained;
  std::thread drain(
      [&] { drained = ts->server->DrainAndShutdown(absl::Now() + absl::Seconds(30)); });
  while (publish()) {
  }
  // Refused: the drain has begun. The engine drains these NOPs at once; the Poll comes after.
  auto got = c->Poll(tickets, absl::Seconds(10));
  EXPECT_TRUE(got.ok()) << got.status();
  if (got.ok()) EXPECT_EQ(got->size(), tickets.size());
  drain.join();
  EXPECT_TRUE(drained.ok()) << drained.status();
  ts->server->Wait();
}

}  // namespace
}  // namespace mk
