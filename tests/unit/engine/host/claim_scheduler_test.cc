// ClaimScheduler on the real host parts (ring, tenant gate, reaper, publisher): priority order with
// the starvation guard, parking of a disabled tenant's slots, fences held until their batch is
// terminal, and drain cancelling what is parked.
#include "host/claim_scheduler.h"

#include <atomic>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "host/engine_base.h"
#include "support/engine_test_util.h"

namespace mk::engine::host {
namespace {

using protocol::SlotStatus;
using testing::RecordingSink;
using testing::Slot;
namespace op = protocol::opcode;

class ClaimSchedulerTest : public ::testing::Test {
 protected:
  // The executor-independent parts an engine assembles (EngineBase), without an executor.
  struct HostParts {
    explicit HostParts(EngineMemory m)
        : memory(std::move(m)),
          tenants(memory.control->control(), 8),
          tickets(8),
          ledger(8, /*collect_latency=*/false),
          shares(8, memory.ring->partition_sizes(), 0),
          reaper(*memory.ring, *memory.control, ledger, store),
          publisher(*memory.ring, tickets, ledger, store, shares, 1u << 20, 0) {
      memory.ring->AttachShares(&shares);
    }
    EngineMemory memory;
    TenantGate tenants;
    TicketBook tickets;
    OutcomeLedger ledger;
    TenantShares shares;
    CompletionStore store{64, absl::Minutes(10)};
    SlotReaper reaper;
    SlotPublisher publisher;
  };

  void SetUp() override {
    EngineOptions o;
    o.ring_slots = 1024;
    o.max_tenants = 8;
    o.scratch_words = 4;
    auto memory = EngineMemory::Allocate(o);
    ASSERT_TRUE(memory.ok()) << memory.status();
    host_ = std::make_unique<HostParts>(*std::move(memory));
    scheduler_ = std::make_unique<ClaimScheduler>(*ring(), *host_->memory.control, host_->tenants,
                                                  host_->reaper, [this] { ++wakes_; });
  }
  PartitionedRing* ring() { return host_->memory.ring.get(); }
  PublishResult Publish(uint32_t tenant, const std::vector<SlotPayload>& slots) {
    auto r = host_->publisher.Publish(tenant, slots, &sink_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : PublishResult{};
  }
  SlotStatus StatusOf(uint32_t index) {
    return static_cast<SlotStatus>(ring()->status(index).load());
  }
  CompletionBatcher NewBatcher() { return host_->reaper.NewBatcher(); }
  // Claims every published range and tries each slot; returns the indices it now owns.
  std::vector<uint32_t> ClaimAll(ControlCounters& counters, CompletionBatcher& batcher) {
    std::vector<uint32_t> owned;
    ClaimRange range;
    while (scheduler_->ClaimNext(1024, &range)) {
      ring()->ForEachIndex(range, [&](uint32_t index) {
        if (scheduler_->TryClaim(index, counters, batcher)) owned.push_back(index);
      });
    }
    return owned;
  }

  // Disables `tenant`, publishes `count` NOPs for it and runs a claim pass, which must take none.
  void PublishParked(uint32_t tenant, size_t count, ControlCounters& counters,
                     CompletionBatcher& batcher) {
    ASSERT_TRUE(host_->tenants.SetEnabled(tenant, false).ok());
    Publish(tenant, std::vector<SlotPayload>(count, Slot(op::kNop)));
    EXPECT_TRUE(ClaimAll(counters, batcher).empty());
  }

  RecordingSink sink_;  // outlives host_, which delivers to it
  std::unique_ptr<HostParts> host_;
  std::unique_ptr<ClaimScheduler> scheduler_;
  std::atomic<int> wakes_{0};
};

TEST_F(ClaimSchedulerTest, HigherPrioritiesFirstWithTheStarvationGuard) {
  Publish(1, std::vector<SlotPayload>(3, Slot(op::kNop, {}, 4)));
  Publish(1, std::vector<SlotPayload>(40, Slot(op::kNop, {}, 0)));
  std::string order;
  ClaimRange range;
  while (scheduler_->ClaimNext(1, &range)) order += range.partition == 0 ? 'C' : 'I';
  EXPECT_EQ(order,
            std::string(16, 'C') + "I" + std::string(16, 'C') + "I" + std::string(8, 'C') + "I");
}

TEST_F(ClaimSchedulerTest, DisabledTenantsSlotsStayPublishedUntilEnabled) {
  ControlCounters counters;
  CompletionBatcher batcher = NewBatcher();
  PublishParked(2, 3, counters, batcher);
  EXPECT_EQ(scheduler_->parked_count(), 3u);
  EXPECT_FALSE(scheduler_->has_ready());
  std::vector<uint32_t> ready;
  ASSERT_TRUE(host_->tenants.SetEnabled(2, true).ok());
  scheduler_->OnTenantEnabled(2);
  EXPECT_EQ(wakes_.load(), 1) << "the executor is told once";
  EXPECT_EQ(scheduler_->parked_count(), 0u);
  ASSERT_TRUE(scheduler_->TakeReady(&ready));
  ASSERT_EQ(ready.size(), 3u);
  for (uint32_t index : ready) {
    EXPECT_EQ(StatusOf(index), SlotStatus::kPublished);
    EXPECT_TRUE(scheduler_->TryClaim(index, counters, batcher));
    EXPECT_EQ(StatusOf(index), SlotStatus::kClaimed);
  }
  // The claims are counted once the executor flushes its counters into the control buffer.
  namespace ctl = protocol::control;
  const ControlView& control = host_->memory.control->control();
  const uint32_t tenant_before = control.Load(ctl::kTenantFairnessFirst + 2);
  const uint32_t priority_before =
      control.Load(ctl::kPriorityFairnessFirst + protocol::kDefaultPriority);
  counters.Flush(control.words().data());
  EXPECT_EQ(control.Load(ctl::kTenantFairnessFirst + 2) - tenant_before, 3u);
  EXPECT_EQ(
      control.Load(ctl::kPriorityFairnessFirst + protocol::kDefaultPriority) - priority_before, 3u);
  counters.Flush(control.words().data());  // flushed once: nothing more is added
  EXPECT_EQ(control.Load(ctl::kTenantFairnessFirst + 2) - tenant_before, 3u);
}

TEST_F(ClaimSchedulerTest, FenceIsHeldUntilItsBatchIsTerminal) {
  Publish(1, {Slot(op::kNop), Slot(op::kNop), Slot(op::kBatchFence, {2, 9})});
  ControlCounters counters;
  CompletionBatcher batcher = NewBatcher();
  const std::vector<uint32_t> owned = ClaimAll(counters, batcher);
  ASSERT_EQ(owned.size(), 2u) << "the fence is set aside";
  const uint32_t fence = owned[1] + 1;
  EXPECT_EQ(StatusOf(fence), SlotStatus::kRequeue);
  // The executor finishes the predecessors; the last one makes the fence ready.
  EXPECT_FALSE(ring()->ReleaseFence(ring()->meta(owned[0]).fence_waiter));
  ASSERT_TRUE(ring()->ReleaseFence(ring()->meta(owned[1]).fence_waiter));
  scheduler_->PushReady(fence);
  std::vector<uint32_t> ready;
  ASSERT_TRUE(scheduler_->TakeReady(&ready));
  ASSERT_EQ(ready, std::vector<uint32_t>{fence});
  EXPECT_TRUE(scheduler_->TryClaim(fence, counters, batcher));
  EXPECT_EQ(StatusOf(fence), SlotStatus::kClaimed);
  EXPECT_FALSE(scheduler_->TryClaim(fence, counters, batcher)) << "claimed exactly once";
}

TEST_F(ClaimSchedulerTest, DrainCancelsParkedSlotsAndFromThenOnInsteadOfParking) {
  ControlCounters counters;
  {
    CompletionBatcher batcher = NewBatcher();
    PublishParked(3, 2, counters, batcher);
    scheduler_->BeginDrain(&batcher);
  }
  ASSERT_TRUE(sink_.WaitForCount(2));
  Publish(3, std::vector<SlotPayload>(1, Slot(op::kNop)));
  {
    CompletionBatcher batcher = NewBatcher();
    EXPECT_TRUE(ClaimAll(counters, batcher).empty());
  }
  ASSERT_TRUE(sink_.WaitForCount(3));
  for (const Completion& c : sink_.completions()) {
    EXPECT_EQ(c.status, CompletionStatus::kCancelled);
  }
  EXPECT_EQ(scheduler_->parked_count(), 0u);
}

}  // namespace
}  // namespace mk::engine::host
