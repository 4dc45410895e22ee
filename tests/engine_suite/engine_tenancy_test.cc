// Tenancy in the ring, on every backend: a tenant holds at most its fair share of a contended
// priority partition (and never the last sixteenth of it, the newcomers' headroom), and at most
// --max_outstanding_slots_per_tenant slots in flight. The engines are not started while the
// tests fill partitions, so every published slot stays in the ring and the counts are exact.
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/engine/engine.h"
#include "support/engine_test_util.h"

namespace mk::engine {
namespace {

using ::testing::HasSubstr;
using testing::RecordingSink;
using testing::Slot;
namespace op = protocol::opcode;

constexpr uint32_t kNormal = static_cast<uint32_t>(protocol::Priority::kNormal);
constexpr uint32_t kCritical = static_cast<uint32_t>(protocol::Priority::kCritical);

class EngineTenancyTest : public ::testing::Test {
 protected:
  void SetUp() override { MK_REQUIRE_BACKEND(testing::BackendUnderTest()); }
  // 4096 slots: the NORMAL partition has 2048, so one tenant may hold 1920 (15/16) of them.
  static EngineOptions Options() { return testing::SmallRingSuiteOptions(); }
  static std::unique_ptr<Engine> Make(const EngineOptions& o) {
    auto e = CreateEngine(o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }
  // Publishes NOPs of `priority` for `tenant` in batches of `batch` until refused; returns how
  // many were accepted and leaves the refusal in `*refused`.
  uint64_t FillUntilRefused(Engine& e, uint32_t tenant, uint32_t batch, uint32_t priority,
                            absl::Status* refused) {
    uint64_t accepted = 0;
    std::vector<SlotPayload> slots(batch, Slot(op::kNop, {}, priority));
    for (int i = 0; i < 100000; ++i) {
      auto r = e.Publish(tenant, slots, {&sink_});
      if (!r.ok()) {
        *refused = r.status();
        return accepted;
      }
      accepted += batch;
    }
    return accepted;
  }
  RecordingSink sink_;
};

// The finding: one tenant kept the NORMAL partition full and another tenant's every publish got
// RESOURCE_EXHAUSTED. Now the flooder stops at 15/16 of the partition, the newcomer gets in, and
// from then on each holds at most half of that.
TEST_F(EngineTenancyTest, AFloodingTenantLeavesRoomForAnother) {
  auto e = Make(Options());
  absl::Status refused;
  EXPECT_EQ(FillUntilRefused(*e, 1, 64, kNormal, &refused), 1920u);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("tenant 1 holds 1920 of the NORMAL partition"));

  ASSERT_TRUE(e->Publish(2, std::vector<SlotPayload>{Slot(op::kNop)}, {&sink_}).ok())
      << "the newcomer publishes into the headroom";
  auto flooder = e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {&sink_});
  EXPECT_EQ(flooder.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(flooder.status().message(),
              HasSubstr("with 2 tenants publishing there its fair share is 960"));
  // The newcomer has the headroom now (128 slots, it holds 1 already); the rest of its share
  // frees up as the flooder's slots complete, since the flooder may not publish meanwhile.
  EXPECT_EQ(FillUntilRefused(*e, 2, 1, kNormal, &refused), 127u);
  EXPECT_THAT(refused.message(), HasSubstr("NORMAL partition is full"));

  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(sink_.WaitForCount(1920 + 128));
  // Once the slots are reaped and counted, the flooder alone may hold 15/16 again.
  ASSERT_TRUE(testing::WaitUntil([&] { return e->counters().done == 1920 + 128; }));
  std::vector<SlotPayload> big(1920, Slot(op::kNop));
  EXPECT_TRUE(e->Publish(1, big, {&sink_}).ok());
  ASSERT_TRUE(sink_.WaitForCount(2 * 1920 + 128));
}

// Claims are FIFO within a partition, so what each backlogged tenant gets claimed is what it
// holds there. Three tenants keep publishing NOPs in batches of 256, 16 and 2 until refused:
// without the rule the big batches take nearly the whole partition; with it each holds about a
// third of H (1920 / 3 = 640), whatever its batch size, and the claims that follow are shared
// the same way.
TEST_F(EngineTenancyTest, BackloggedTenantsGetEqualClaimsWhateverTheirBatchSize) {
  for (bool fair : {false, true}) {
    EngineOptions o = Options();
    o.fair_share = fair;
    auto e = Make(o);
    const uint32_t batches[] = {256, 16, 2};
    uint64_t held[3] = {0, 0, 0};
    bool refused[3] = {false, false, false};
    for (int round = 0; round < 10000 && !(refused[0] && refused[1] && refused[2]); ++round) {
      for (uint32_t t = 0; t < 3; ++t) {
        if (refused[t]) continue;
        std::vector<SlotPayload> batch(batches[t], Slot(op::kNop));
        if (e->Publish(1 + t, batch, {&sink_}).ok()) {
          held[t] += batches[t];
        } else {
          refused[t] = true;
        }
      }
    }
    SCOPED_TRACE(
        absl::StrCat(fair ? "fair" : "unfair", ": held ", held[0], " / ", held[1], " / ", held[2]));
    const uint64_t total = held[0] + held[1] + held[2];
    if (fair) {
      for (uint64_t h : held) {
        EXPECT_LE(h, 640u) << "at most a third of H";
        EXPECT_GE(h, 640u - 256u) << "at least a third of H less one batch";
      }
    } else {
      EXPECT_GT(held[0], total * 8 / 10) << "the big batches took the partition";
    }
    ASSERT_TRUE(e->Start().ok());
    ASSERT_TRUE(sink_.WaitForCount(total));
    uint64_t claimed[3] = {0, 0, 0};
    for (const Completion& c : sink_.completions()) ++claimed[c.tenant - 1];
    for (uint32_t t = 0; t < 3; ++t) EXPECT_EQ(claimed[t], held[t]) << "tenant " << 1 + t;
    sink_.Clear();
  }
}

// The operator's knob: a lower share bounds how far behind a flooder another tenant's slot
// queues (here 1/4 of the 2048-slot partition), and out-of-range values are refused.
TEST_F(EngineTenancyTest, TheLargestShareIsAnOption) {
  EngineOptions o = Options();
  o.max_tenant_partition_share = 0.25;
  auto e = Make(o);
  absl::Status refused;
  EXPECT_EQ(FillUntilRefused(*e, 1, 64, kNormal, &refused), 512u);
  EXPECT_EQ(e->Publish(2, std::vector<SlotPayload>(513, Slot(op::kNop)), {&sink_}).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(sink_.WaitForCount(512));
  for (double bad : {0.0, -1.0, 1.5}) {
    o.max_tenant_partition_share = bad;
    auto r = CreateEngine(o);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("max_tenant_partition_share"));
  }
}

TEST_F(EngineTenancyTest, SharesArePerPriorityPartition) {
  auto e = Make(Options());
  absl::Status refused;
  EXPECT_EQ(FillUntilRefused(*e, 1, 64, kNormal, &refused), 1920u);
  EXPECT_TRUE(e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop, {}, kCritical)}, {&sink_}).ok())
      << "a full NORMAL share does not hold back the tenant's CRITICAL slots";
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(sink_.WaitForCount(1921));
}

TEST_F(EngineTenancyTest, ABatchLargerThanATenantMayHoldIsInvalid) {
  auto e = Make(Options());
  std::vector<SlotPayload> batch(1921, Slot(op::kNop));
  auto r = e->Publish(1, batch, {&sink_});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("1921 NORMAL slots in one batch exceed"));
  EXPECT_THAT(r.status().message(), HasSubstr("split the batch"));
  EXPECT_EQ(e->counters().accepted, 0u);
}

TEST_F(EngineTenancyTest, OutstandingSlotsAreCappedPerTenant) {
  EngineOptions o = Options();
  o.max_outstanding_slots_per_tenant = 100;
  auto e = Make(o);
  absl::Status refused;
  EXPECT_EQ(FillUntilRefused(*e, 1, 10, kNormal, &refused), 100u);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("tenant 1 has 100 slots in flight and may have 100"));
  EXPECT_THAT(refused.message(), HasSubstr("--max_outstanding_slots_per_tenant"));
  // Over all priorities, and per tenant: tenant 2 has its own 100.
  EXPECT_FALSE(
      e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop, {}, kCritical)}, {&sink_}).ok());
  EXPECT_EQ(FillUntilRefused(*e, 2, 10, kNormal, &refused), 100u);
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(sink_.WaitForCount(200));
  ASSERT_TRUE(testing::WaitUntil([&] { return e->counters().done == 200; }));
  EXPECT_TRUE(e->Publish(1, std::vector<SlotPayload>(100, Slot(op::kNop)), {&sink_}).ok())
      << "completed slots no longer count";
  ASSERT_TRUE(sink_.WaitForCount(300));
}

// Cancelled and failed slots give their room back too: a tenant that cancels everything it
// published, or whose slots fail in a restart, is not left holding a share. A cancelled slot's
// room (and so its share) comes back when the ring's tail passes it, once the executors have
// claimed past it: here after the engine starts and another tenant's slot completes behind it.
TEST_F(EngineTenancyTest, CancelledSlotsGiveTheirShareBack) {
  EngineOptions o = Options();
  o.max_outstanding_slots_per_tenant = 100;
  auto e = Make(o);
  std::vector<uint64_t> tickets;
  for (int i = 0; i < 10; ++i) {
    auto r = e->Publish(1, std::vector<SlotPayload>(10, Slot(op::kNop)), {&sink_});
    ASSERT_TRUE(r.ok()) << r.status();
    for (uint32_t k = 0; k < r->count; ++k) tickets.push_back(r->first_ticket + k);
  }
  ASSERT_FALSE(e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {&sink_}).ok());
  auto cancelled = e->Cancel(1, tickets);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(*cancelled, 100u);
  ASSERT_TRUE(sink_.WaitForCount(100));
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(e->Publish(2, std::vector<SlotPayload>{Slot(op::kNop)}, {&sink_}).ok());
  ASSERT_TRUE(sink_.WaitForCount(101));
  EXPECT_TRUE(e->Publish(1, std::vector<SlotPayload>(100, Slot(op::kNop)), {&sink_}).ok());
  ASSERT_TRUE(sink_.WaitForCount(201));
}

// Executors finish out of order (the GPU's blocks, the CPU's workers), and a completed slot
// behind an older one still in flight is room the FIFO cannot reuse yet. The finding (on the
// H200, three flooders): shares were given back per completion, so flooders re-published into
// room that was not free and the newcomers' headroom filled; a victim's publishes were refused
// as "partition full". Now a slot counts against its tenant until the ring's tail passes it.
// Here a disabled tenant's slot holds the tail while a second tenant publishes and collects
// batch after batch: it is refused at its share (960 of the 1920 slots two tenants may hold),
// and a third tenant still publishes into the headroom.
TEST_F(EngineTenancyTest, CompletedSlotsBehindAnOlderOneStillCountAgainstTheirShare) {
  auto e = Make(Options());
  ASSERT_TRUE(e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {&sink_}).ok());
  ASSERT_TRUE(e->SetTenantEnabled(1, false).ok());  // its slot stays PUBLISHED at the tail
  ASSERT_TRUE(e->Start().ok());
  uint64_t accepted = 0;
  absl::Status refused;
  for (int i = 0; i < 100 && refused.ok(); ++i) {
    auto r = e->Publish(2, std::vector<SlotPayload>(64, Slot(op::kNop)), {&sink_});
    if (!r.ok()) {
      refused = r.status();
      break;
    }
    accepted += 64;
    ASSERT_TRUE(sink_.WaitForCount(accepted)) << "each batch completes before the next";
  }
  EXPECT_EQ(accepted, 960u);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("its fair share is 960"));
  EXPECT_TRUE(e->Publish(3, std::vector<SlotPayload>(64, Slot(op::kNop)), {&sink_}).ok())
      << "the newcomer's headroom is still free";
  ASSERT_TRUE(e->SetTenantEnabled(1, true).ok());
  ASSERT_TRUE(sink_.WaitForCount(accepted + 65));
}

// Re-polling a collected ticket, or polling one whose completion went to a sink (a stream),
// waited the whole wait and answered OK with nothing. Now, with nothing owed to the tenant, it
// is NOT_FOUND at once, naming the ticket (with completions owed, see the next test).
TEST_F(EngineTenancyTest, PollingATicketThatCannotArriveFailsAtOnce) {
  auto e = Make(Options());
  ASSERT_TRUE(e->Start().ok());
  auto r = e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(e->WaitFor(1, testing::Tickets(*r), absl::Now() + absl::Seconds(30))->size(), 1u);
  const absl::Time start = absl::Now();
  auto again = e->WaitFor(1, testing::Tickets(*r), absl::Now() + absl::Hours(1));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(again.status().message(),
              HasSubstr(absl::StrCat("tickets[0] = ", r->first_ticket, " is not pending")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "not the hour-long wait";
  auto async = e->WaitForAsync(1, testing::Tickets(*r), absl::Now() + absl::Hours(1),
                               [](const std::vector<Completion>& /*unused*/) {});
  EXPECT_EQ(async.status().code(), absl::StatusCode::kNotFound);

  auto streamed = e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {&sink_});
  ASSERT_TRUE(streamed.ok());
  ASSERT_TRUE(sink_.WaitForCount(1));
  EXPECT_EQ(
      e->WaitFor(1, testing::Tickets(*streamed), absl::Now() + absl::Hours(1)).status().code(),
      absl::StatusCode::kNotFound)
      << "its completion went to the sink";
}

// With other completions still owed to the tenant, a ticket it collected already, or one the
// store dropped after the time-to-live, is NOT_FOUND at once too, saying which happened; the
// owed one is still collected.
TEST_F(EngineTenancyTest, RepollingWhileOthersAreOwedFailsAtOnce) {
  EngineOptions o = Options();
  // Long enough that `owed` below is still stored when polled (slow sanitizer runs included).
  o.completion_ttl = absl::Seconds(2);
  auto e = Make(o);
  ASSERT_TRUE(e->Start().ok());
  auto collected = e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {});
  ASSERT_TRUE(collected.ok());
  ASSERT_EQ(e->WaitFor(1, testing::Tickets(*collected), absl::Now() + absl::Seconds(30))->size(),
            1u);
  auto dropped = e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {});
  ASSERT_TRUE(dropped.ok());
  ASSERT_TRUE(testing::WaitUntil([&] { return e->counters().expired_completions == 1; }));
  auto owed = e->Publish(1, std::vector<SlotPayload>{Slot(op::kNop)}, {});
  ASSERT_TRUE(owed.ok());

  const absl::Time start = absl::Now();
  auto again = e->WaitFor(1, testing::Tickets(*collected), absl::Now() + absl::Hours(1));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(again.status().message(),
              HasSubstr(absl::StrCat("ticket ", collected->first_ticket,
                                     " of tenant 1 was collected already")));
  auto late = e->WaitFor(1, testing::Tickets(*dropped), absl::Now() + absl::Hours(1));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(late.status().message(), HasSubstr(absl::StrCat("ticket ", dropped->first_ticket,
                                                              " of tenant 1 was dropped")));
  auto async = e->WaitForAsync(1, testing::Tickets(*collected), absl::Now() + absl::Hours(1),
                               [](const std::vector<Completion>& /*unused*/) {});
  EXPECT_EQ(async.status().code(), absl::StatusCode::kNotFound);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "not the hour-long waits";
  auto got = e->WaitFor(1, testing::Tickets(*owed), absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), 1u);
}

}  // namespace
}  // namespace mk::engine
