// The black-box engine suite: the same tests run against every backend. The backend comes from
// MK_TEST_ENGINE (cpu by default; ctest registers one run per backend).
#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/engine/engine.h"
#include "mk/engine/opcode_registry.h"
#include "mk/engine/packed_slot.h"
#include "mk/engine/testing/engine_peer.h"
#include "support/engine_test_util.h"

namespace mk::engine {
namespace {

using ::testing::HasSubstr;
using testing::RecordingSink;
using testing::RunOne;
using testing::Slot;
using testing::Tickets;
namespace op = protocol::opcode;
using protocol::FaultCode;

class EngineConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override { MK_REQUIRE_BACKEND(testing::BackendUnderTest()); }
  EngineOptions Options() { return testing::SmallRingSuiteOptions(); }
  std::unique_ptr<Engine> Make(const EngineOptions& o) {
    auto e = CreateEngine(o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }
  std::unique_ptr<Engine> MakeStarted() { return testing::MakeStarted(Options()); }
  static void ExpectFault(const Completion& c, FaultCode code, uint32_t detail) {
    EXPECT_EQ(c.status, CompletionStatus::kFault);
    EXPECT_EQ(c.fault_code, static_cast<uint32_t>(code));
    EXPECT_EQ(c.fault_detail, detail);
  }
};

TEST_F(EngineConformanceTest, NopRoundTripAndTickets) {
  auto e = MakeStarted();
  Completion c = RunOne(*e, Slot(op::kNop, {5, 6, 7}));
  EXPECT_EQ(c.status, CompletionStatus::kDone);
  EXPECT_EQ(c.ticket, 1u) << "tickets start at 1 per tenant";
  EXPECT_EQ(c.tenant, 1u);
  EXPECT_EQ(c.results, (std::array<uint32_t, 12>{})) << "unused result words are zero";
  EXPECT_EQ(RunOne(*e, Slot(op::kNop)).ticket, 2u);
  EXPECT_EQ(RunOne(*e, Slot(op::kNop), /*tenant=*/2).ticket, 1u) << "tickets are per tenant";
}

TEST_F(EngineConformanceTest, ScratchBuiltinsAndFaults) {
  auto e = MakeStarted();
  EXPECT_EQ(RunOne(*e, Slot(op::kStoreU32, {40, 2})).status, CompletionStatus::kDone);
  EXPECT_EQ(RunOne(*e, Slot(op::kAtomicAdd, {2, 2})).results[0], 40u);
  EXPECT_EQ(RunOne(*e, Slot(op::kLoadU32, {2})).results[0], 42u);
  EXPECT_EQ(RunOne(*e, Slot(op::kCompareSwap, {2, 42, 7})).results[0], 42u);
  EXPECT_EQ(RunOne(*e, Slot(op::kMemcpy, {2, 9, 1})).status, CompletionStatus::kDone);
  EXPECT_EQ(RunOne(*e, Slot(op::kLoadU32, {9})).results[0], 7u);
  Completion sum = RunOne(*e, Slot(protocol::ScratchSumOp::kOpcode, {0, 16}));
  EXPECT_EQ(sum.results[0], 14u);
  EXPECT_EQ(RunOne(*e, Slot(op::kLoadU32, {2}), /*tenant=*/3).results[0], 0u)
      << "another tenant's window is separate";
  ExpectFault(RunOne(*e, Slot(op::kStoreU32, {1, 16})), FaultCode::kOutOfBounds, 16);
  ExpectFault(RunOne(*e, Slot(op::kLoadU32, {0xFFFFFFFF})), FaultCode::kOutOfBounds, 0xFFFFFFFF);
  ExpectFault(RunOne(*e, Slot(op::kLoadMiss, {4, 0})), FaultCode::kResourceNotFound, 4);
}

TEST_F(EngineConformanceTest, PackedSlotRunsAllInnerOps) {
  auto e = MakeStarted();
  // Six inner ops (vyre runs at most four): 1 + 3 + 3 + 1 + 1 + 1 + 2 = 12 words.
  const std::vector<InnerOp> ops = {{op::kAtomicAdd, {3, 0}}, {op::kAtomicAdd, {3, 0}},
                                    {op::kNop, {}},           {op::kNop, {}},
                                    {op::kNop, {}},           {op::kLoadU32, {0}}};
  auto args = EncodePackedSlot(ops);
  ASSERT_TRUE(args.ok()) << args.status();
  SlotPayload s = Slot(op::kPackedSlot);
  s.args = *args;
  Completion c = RunOne(*e, s);
  ASSERT_EQ(c.status, CompletionStatus::kDone);
  EXPECT_EQ(c.results[1], 3u) << "inner op 1's result0 is the previous value";
  EXPECT_EQ(c.results[5], 6u) << "the sixth inner op ran and saw both adds";
}

TEST_F(EngineConformanceTest, PrintfLandsInDebugLog) {
  auto e = MakeStarted();
  for (uint32_t i = 0; i < 3; ++i) RunOne(*e, Slot(op::kPrintf, {100 + i, i, 2 * i}));
  DebugLogContents log;
  ASSERT_TRUE(e->ReadDebugLog(&log).ok());
  ASSERT_EQ(log.records.size(), 3u);
  std::set<uint32_t> fmts;
  for (const DebugRecord& r : log.records) fmts.insert(r.fmt_id);
  EXPECT_EQ(fmts, (std::set<uint32_t>{100, 101, 102}));
  EXPECT_EQ(log.overflow, 0u);
}

TEST_F(EngineConformanceTest, ValidationNamesSlotAndField) {
  auto e = MakeStarted();
  auto expect_invalid = [&](const std::vector<SlotPayload>& slots, const std::string& needle) {
    auto r = e->Publish(1, slots, {});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_THAT(r.status().message(), HasSubstr(needle));
  };
  expect_invalid({Slot(op::kNop), Slot(9999)}, "slot 1: opcode 9999 has no registered handler");
  expect_invalid({Slot(op::kNop, {}, 5)}, "slot 0: priority 5 out of range");
  expect_invalid({Slot(op::kNop), Slot(op::kBatchFence, {2, 0})},
                 "slot 1: args[0] (BATCH_FENCE count)");
  expect_invalid({Slot(op::kShutdown)}, "admin-only");
  expect_invalid({Slot(op::kPackedSlot, {0})}, "slot 0: args (PACKED_SLOT)");
  expect_invalid({}, "empty batch");
  EXPECT_EQ(e->Publish(64, std::vector<SlotPayload>{Slot(op::kNop)}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto never = e->WaitFor(1, std::vector<uint64_t>{5}, absl::Now());
  EXPECT_THAT(never.status().message(), HasSubstr("never issued"));
  EXPECT_EQ(e->counters().accepted, 0u) << "nothing of a rejected batch was published";
}

TEST_F(EngineConformanceTest, PrioritiesWithStarvationGuard) {
  EngineOptions o = Options();
  o.workers = 1;
  o.claim_batch = 1;
  RecordingSink sink;
  auto e = Make(o);
  std::vector<SlotPayload> idle(40, Slot(op::kNop, {}, 4));
  std::vector<SlotPayload> critical(40, Slot(op::kNop, {}, 0));
  auto idle_r = *e->Publish(1, idle, {&sink});
  auto crit_r = *e->Publish(2, critical, {&sink});
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(sink.WaitForCount(80));
  std::string order;
  for (const Completion& c : sink.completions()) order += c.tenant == 2 ? 'C' : 'I';
  // 16 consecutive CRITICAL claims, then the guard lets one IDLE slot through.
  EXPECT_EQ(order.substr(0, 34), std::string(16, 'C') + "I" + std::string(16, 'C') + "I");
  EXPECT_EQ(std::count(order.begin(), order.end(), 'C'), 40);
  (void)idle_r;
  (void)crit_r;
}

TEST_F(EngineConformanceTest, BatchFenceCompletesAfterItsBatch) {
  EngineOptions o = Options();
  o.workers = 1;
  RecordingSink sink;
  auto e = Make(o);
  // Predecessors at IDLE, the fence at CRITICAL: the fence is claimed first and must wait.
  std::vector<SlotPayload> batch;
  for (uint32_t i = 0; i < 10; ++i) batch.push_back(Slot(op::kAtomicAdd, {1, 0}, 4));
  batch.push_back(Slot(op::kBatchFence, {10, 77}, 0));
  batch.push_back(Slot(op::kNop, {}, 4));  // after the fence, not covered by it
  auto r = *e->Publish(1, batch, {&sink});
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(sink.WaitForCount(12));
  std::vector<Completion> got = sink.completions();
  size_t fence_pos = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].ticket == r.first_ticket + 10) fence_pos = i;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].ticket < r.first_ticket + 10) EXPECT_LT(i, fence_pos) << "ticket " << got[i].ticket;
  }
  EXPECT_EQ(got[fence_pos].results[0], 77u);
  TelemetrySnapshot t;
  ASSERT_TRUE(e->Telemetry({}, &t).ok());
  EXPECT_EQ(t.control.epoch, 1u);
}

TEST_F(EngineConformanceTest, FenceReleasedByCancelledPredecessors) {
  RecordingSink sink;
  auto e = Make(Options());
  std::vector<SlotPayload> batch = {Slot(op::kNop), Slot(op::kNop), Slot(op::kBatchFence, {2, 5})};
  auto r = *e->Publish(1, batch, {&sink});
  ASSERT_EQ(*e->Cancel(1, std::vector<uint64_t>{r.first_ticket, r.first_ticket + 1}), 2u);
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(sink.WaitForCount(3));
  EXPECT_EQ(sink.completions().back().status, CompletionStatus::kDone);
}

TEST_F(EngineConformanceTest, DisabledTenantSlotsStayPublishedUntilEnabled) {
  EngineOptions o = Options();
  o.workers = 1;
  auto e = Make(o);
  std::vector<SlotPayload> three(3, Slot(op::kNop));
  auto parked = *e->Publish(3, three, {});
  ASSERT_TRUE(e->SetTenantEnabled(3, false).ok());
  EXPECT_EQ(e->Publish(3, three, {}).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(e->Start().ok());
  // Tenant 4's slot sits behind tenant 3's in the same partition: once it completed, the
  // worker has passed tenant 3's slots and left them unclaimed.
  EXPECT_EQ(RunOne(*e, Slot(op::kNop), 4).status, CompletionStatus::kDone);
  TelemetrySnapshot t;
  ASSERT_TRUE(e->Telemetry({}, &t).ok());
  EXPECT_EQ(t.occupancy.count(protocol::SlotStatus::kPublished), 3u);
  EXPECT_TRUE(e->WaitFor(3, Tickets(parked), absl::Now())->empty());
  ASSERT_TRUE(e->SetTenantEnabled(3, true).ok());
  auto done = e->WaitFor(3, Tickets(parked), absl::Now() + absl::Seconds(30));
  ASSERT_EQ(done->size(), 3u);
  for (const Completion& c : *done) EXPECT_EQ(c.status, CompletionStatus::kDone);
}

TEST_F(EngineConformanceTest, CancelUnclaimedSlots) {
  auto e = Make(Options());
  std::vector<SlotPayload> batch(10, Slot(op::kNop));
  auto r = *e->Publish(1, batch, {});
  std::vector<uint64_t> odd;
  for (uint64_t t = r.first_ticket + 1; t < r.first_ticket + 10; t += 2) odd.push_back(t);
  EXPECT_EQ(*e->Cancel(1, odd), 5u);
  EXPECT_EQ(*e->Cancel(2, std::vector<uint64_t>{r.first_ticket}), 0u) << "not tenant 2's ticket";
  ASSERT_TRUE(e->Start().ok());
  auto done = *e->WaitFor(1, Tickets(r), absl::Now() + absl::Seconds(30));
  ASSERT_EQ(done.size(), 10u);
  for (const Completion& c : done) {
    EXPECT_EQ(c.status, (c.ticket - r.first_ticket) % 2 == 1 ? CompletionStatus::kCancelled
                                                             : CompletionStatus::kDone);
  }
  // Totals are added after the completions are delivered (they never run ahead of them).
  ASSERT_TRUE(testing::WaitUntil([&] { return e->counters().in_flight == 0; }));
  EngineCounters n = e->counters();
  EXPECT_EQ(n.accepted, 10u);
  EXPECT_EQ(n.done, 5u);
  EXPECT_EQ(n.cancelled, 5u);
}

TEST_F(EngineConformanceTest, RingFullBackpressureLosesNothing) {
  EngineOptions o = Options();
  o.ring_slots = 64;
  RecordingSink sink;
  auto e = Make(o);
  uint64_t accepted = 0;
  absl::Status full;
  for (int i = 0; i < 100 && full.ok(); ++i) {
    auto r = e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {&sink});
    if (r.ok()) {
      ++accepted;
    } else {
      full = r.status();
    }
  }
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.message(), HasSubstr("retry"));
  EXPECT_EQ(e->counters().accepted, accepted);
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(sink.WaitForCount(accepted));
  EXPECT_TRUE(e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {&sink}).ok())
      << "reaped slots are reusable";
  ASSERT_TRUE(sink.WaitForCount(accepted + 1));
}

TEST_F(EngineConformanceTest, DrainFinishesAcceptedWork) {
  RecordingSink sink;
  auto e = MakeStarted();
  // 1600 slots: within what one tenant may hold of the 2048-slot NORMAL partition (15/16).
  std::vector<SlotPayload> batch(400, Slot(op::kAtomicAdd, {1, 0}));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(e->Publish(1, batch, {&sink}).ok());
  auto counters = e->Drain(absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(counters.ok()) << counters.status();
  EXPECT_EQ(counters->accepted, 1600u);
  EXPECT_EQ(counters->done, 1600u);
  EXPECT_EQ(counters->in_flight, 0u);
  EXPECT_EQ(sink.completions().size(), 1600u);
  EXPECT_EQ(e->Publish(1, batch, {&sink}).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(EngineConformanceTest, DrainCancelsDisabledTenantsSlots) {
  auto e = Make(Options());
  auto r = *e->Publish(5, std::vector<SlotPayload>(4, Slot(op::kNop)), {});
  ASSERT_TRUE(e->SetTenantEnabled(5, false).ok());
  ASSERT_TRUE(e->Start().ok());
  auto counters = e->Drain(absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(counters.ok()) << counters.status();
  EXPECT_EQ(counters->cancelled, 4u);
  const auto got = e->WaitFor(5, Tickets(r), absl::Now());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 4u);
  for (const Completion& c : *got) EXPECT_EQ(c.status, CompletionStatus::kCancelled);
}

TEST_F(EngineConformanceTest, ShutdownWithoutDrainFaultsInFlight) {
  RecordingSink sink;
  auto e = Make(Options());  // never started: everything stays in flight
  ASSERT_TRUE(e->Publish(1, std::vector<SlotPayload>(300, Slot(op::kNop)), {&sink}).ok());
  auto counters = e->Shutdown();
  ASSERT_TRUE(counters.ok());
  EXPECT_EQ(counters->accepted, 300u);
  EXPECT_EQ(counters->faulted, 300u);
  EXPECT_EQ(counters->accepted, counters->done + counters->faulted + counters->cancelled);
  ASSERT_EQ(sink.completions().size(), 300u);
  ExpectFault(sink.completions()[0], FaultCode::kEngineRestart,
              static_cast<uint32_t>(protocol::SlotStatus::kPublished));
  EXPECT_EQ(e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {}).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(EngineConformanceTest, TelemetryCountsWork) {
  RecordingSink sink;
  auto e = MakeStarted();
  ASSERT_TRUE(e->Publish(1, std::vector<SlotPayload>(100, Slot(op::kNop, {}, 1)), {&sink}).ok());
  ASSERT_TRUE(sink.WaitForCount(100));
  TelemetrySnapshot t;
  ASSERT_TRUE(e->Telemetry({}, &t).ok());
  EXPECT_EQ(t.control.done_count, 100u);
  ASSERT_FALSE(t.control.opcode_metrics.empty());
  EXPECT_EQ(t.control.opcode_metrics[0], std::make_pair(0u, 100u));
  EXPECT_EQ(t.control.priority_fairness[1], 100u);
  EXPECT_EQ(t.control.tenant_fairness[1], 100u);
  EXPECT_EQ(t.occupancy.total, 4096u);
  EXPECT_EQ(e->info().ring_slots, 4096u);
}

TEST_F(EngineConformanceTest, WaitForAsyncDeliversOnceAllCompleteOrAtDeadline) {
  auto e = Make(Options());
  auto r = *e->Publish(1, std::vector<SlotPayload>(5, Slot(op::kNop)), {});
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::vector<Completion>> calls;
  auto record = [&](std::vector<Completion> got) {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(std::move(got));
    cv.notify_all();
  };
  auto wait_calls = [&](size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return calls.size() >= n; });
  };
  // Not started: nothing completes, so the deadline answers with an empty set.
  ASSERT_TRUE(e->WaitForAsync(1, Tickets(r), absl::Now() + absl::Milliseconds(20), record).ok());
  ASSERT_TRUE(wait_calls(1));
  EXPECT_TRUE(calls[0].empty());
  ASSERT_TRUE(e->WaitForAsync(1, Tickets(r), absl::Now() + absl::Seconds(30), record).ok());
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(wait_calls(2));
  EXPECT_EQ(calls[1].size(), 5u) << "answered as soon as all five completed, long before 30 s";
  EXPECT_EQ(e->WaitForAsync(1, std::vector<uint64_t>{99}, absl::Now(), record).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(calls.size(), 2u) << "an invalid wait never calls back";
}

// One tenant that never collects its completions uses up its own quota, not everyone's room,
// and what it leaves uncollected is dropped after the time-to-live (then it may publish again).
TEST_F(EngineConformanceTest, UncollectedCompletionsAreBoundedPerTenantAndExpire) {
  EngineOptions o = Options();
  o.max_stored_completions = 1000;
  o.max_stored_completions_per_tenant = 30;
  o.completion_ttl = absl::Milliseconds(40);
  auto e = Make(o);
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(e->Publish(1, std::vector<SlotPayload>(30, Slot(op::kNop)), {}).ok());
  auto refused = e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("tenant 1 is owed 30"));
  auto other = e->Publish(2, std::vector<SlotPayload>(30, Slot(op::kNop)), {});
  ASSERT_TRUE(other.ok()) << "tenant 2 is not blocked by tenant 1: " << other.status();
  ASSERT_EQ(e->WaitFor(2, Tickets(*other), absl::Now() + absl::Seconds(30))->size(), 30u);
  ASSERT_TRUE(testing::WaitUntil([&] { return e->counters().expired_completions == 30; }));
  EXPECT_EQ(e->counters().stored_completions, 0u);
  EXPECT_TRUE(e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {}).ok())
      << "the dropped completions are owed no more";
}

// A disabled tenant's parked slot that is cancelled leaves the parked list: its ring slot, reused
// by another tenant, is never cancelled by a drain nor run out of order through the stale entry.
TEST_F(EngineConformanceTest, CancelledParkedSlotsNeverReachAnotherTenantsSlots) {
  if (testing::BackendUnderTest() != EngineOptions::Backend::kCpu) {
    GTEST_SKIP() << "the offload engines dispatch a slot when it is published, so a slot of a "
                    "tenant disabled later is not parked by the claim scheduler";
  }
  auto e = Make(Options());
  ASSERT_TRUE(e->Start().ok());
  // Published while execution is paused, then the tenant is disabled: the claim parks it.
  testing::EnginePeer::PauseExecution(*e, true);
  auto parked = *e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {});
  ASSERT_TRUE(e->SetTenantEnabled(1, false).ok());
  testing::EnginePeer::PauseExecution(*e, false);
  ASSERT_TRUE(testing::WaitUntil([&] { return e->counters().parked_slots == 1; }));
  ASSERT_EQ(*e->Cancel(1, Tickets(parked)), 1u);
  EXPECT_EQ(e->counters().parked_slots, 0u) << "the cancelled slot is parked no more";
  ASSERT_EQ(e->WaitFor(1, Tickets(parked), absl::Now() + absl::Seconds(30))->size(), 1u);
  // Tenant 2 fills the NORMAL partition (every index, the cancelled slot's too) while paused.
  testing::EnginePeer::PauseExecution(*e, true);
  std::vector<uint64_t> theirs;
  for (;;) {
    auto r = e->Publish(2, std::vector<SlotPayload>(64, Slot(op::kNop)), {});
    if (!r.ok()) break;
    for (uint64_t t : Tickets(*r)) theirs.push_back(t);
  }
  ASSERT_FALSE(theirs.empty());
  // A drain cancels parked slots of disabled tenants: none of tenant 2's.
  EXPECT_FALSE(e->Drain(absl::Now() + absl::Milliseconds(50)).ok());
  testing::EnginePeer::PauseExecution(*e, false);
  auto done = e->WaitFor(2, theirs, absl::Now() + absl::Seconds(60));
  ASSERT_TRUE(done.ok());
  ASSERT_EQ(done->size(), theirs.size());
  for (const Completion& c : *done) ASSERT_EQ(c.status, CompletionStatus::kDone) << c.ticket;
}

// Publishing a batch whose BATCH_FENCEs cover overlapping ranges costs about what a batch of
// NOPs of the same size costs (it was quadratic: 16384 fences over up to 32768 predecessors
// held the ring, and every other publisher, for hundreds of milliseconds). Measured in the same
// run as the NOP batch; the bound is loose (the quadratic cost was three orders of magnitude).
TEST_F(EngineConformanceTest, OverlappingFencesPublishInLinearTime) {
  EngineOptions o = Options();
  o.ring_slots = 1 << 18;  // both batches stay in flight: 65536 of the 131072 NORMAL slots
  auto e = Make(o);
  ASSERT_TRUE(e->Start().ok());
  constexpr uint32_t kSlots = 32768;
  std::vector<SlotPayload> fenced(kSlots, Slot(op::kNop));
  for (uint32_t i = 1; i < kSlots; i += 2) fenced[i] = Slot(op::kBatchFence, {i});
  const std::vector<SlotPayload> plain(kSlots, Slot(op::kNop));
  // Execution paused: only the publish is timed (the slots fail with ENGINE_RESTART when the
  // engine shuts down at the end; fence semantics are tested above).
  testing::EnginePeer::PauseExecution(*e, true);
  auto publish = [&](const std::vector<SlotPayload>& batch) {
    const absl::Time start = absl::Now();
    auto r = e->Publish(1, batch, {});
    const absl::Duration took = absl::Now() - start;
    EXPECT_TRUE(r.ok()) << r.status();
    return took;
  };
  const absl::Duration nops = publish(plain);
  const absl::Duration fences = publish(fenced);
  EXPECT_LT(fences, std::max(nops * 50, absl::Milliseconds(50)))
      << "fenced " << fences << " vs plain " << nops;
}

// A wait whose caller went away ends at once, long before its deadline, holding nothing; what
// it had collected goes back and a later wait finds it.
TEST_F(EngineConformanceTest, EndWaitFinishesAWaitAtOnceAndLosesNothing) {
  auto e = Make(Options());
  ASSERT_TRUE(e->Start().ok());
  auto done = *e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {});
  ASSERT_EQ(e->WaitFor(1, Tickets(done), absl::Now() + absl::Seconds(30))->size(), 1u);
  auto fresh = *e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {});
  ASSERT_TRUE(testing::WaitUntil([&] { return e->counters().done >= 2; }));  // stored, uncollected
  testing::EnginePeer::PauseExecution(*e, true);
  auto parked = *e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {});
  std::vector<uint64_t> tickets = Tickets(fresh);
  tickets.push_back(parked.first_ticket);
  std::mutex mu;
  std::condition_variable cv;
  std::optional<std::vector<Completion>> got;
  auto id =
      e->WaitForAsync(1, tickets, absl::Now() + absl::Hours(1), [&](std::vector<Completion> c) {
        std::lock_guard<std::mutex> lock(mu);
        got = std::move(c);
        cv.notify_all();
      });
  ASSERT_TRUE(id.ok()) << id.status();
  const absl::Time start = absl::Now();
  e->EndWait(*id);
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return got.has_value(); }));
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << "not the hour-long deadline";
  ASSERT_EQ(got->size(), 1u);
  e->ReturnCompletions(*got);  // the RPC that wanted it was cancelled
  e->EndWait(*id);             // a finished wait: no effect
  testing::EnginePeer::PauseExecution(*e, false);
  auto again = e->WaitFor(1, tickets, absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), 2u) << "the handed-back completion and the parked one";
}

TEST_F(EngineConformanceTest, SecondWaiterGetsACompletionTheFirstHandsBack) {
  auto e = Make(Options());
  auto r = *e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {});
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Completion> first, second;
  bool first_done = false, second_done = false;
  auto wait = [&](bool& flag) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return flag; });
  };
  ASSERT_TRUE(e->WaitForAsync(1, Tickets(r), absl::Now() + absl::Seconds(30),
                              [&](std::vector<Completion> got) {
                                std::lock_guard<std::mutex> lock(mu);
                                first = std::move(got);
                                first_done = true;
                                cv.notify_all();
                              })
                  .ok());
  ASSERT_TRUE(e->WaitForAsync(1, Tickets(r), absl::Now() + absl::Seconds(30),
                              [&](std::vector<Completion> got) {
                                std::lock_guard<std::mutex> lock(mu);
                                second = std::move(got);
                                second_done = true;
                                cv.notify_all();
                              })
                  .ok());
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(wait(first_done));
  ASSERT_EQ(first.size(), 1u) << "the first waiter gets the completion";
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_FALSE(second_done) << "the second keeps waiting";
  }
  e->ReturnCompletions(first);  // e.g. the first waiter's RPC was cancelled
  ASSERT_TRUE(wait(second_done));
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].ticket, r.first_ticket);
}

TEST_F(EngineConformanceTest, IdleWorkersPark) {
  auto e = MakeStarted();
  RunOne(*e, Slot(op::kNop));
  EXPECT_TRUE(testing::WaitUntil([&] { return e->counters().parked_workers == e->info().workers; }))
      << "idle workers must stop spinning";
  EXPECT_EQ(RunOne(*e, Slot(op::kNop)).status, CompletionStatus::kDone) << "and wake for work";
}

}  // namespace
}  // namespace mk::engine
