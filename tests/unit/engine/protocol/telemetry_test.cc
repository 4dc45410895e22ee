#include "mk/engine/telemetry.h"

#include <vector>

#include "gtest/gtest.h"
#include "mk/engine/control_buffer.h"

namespace mk::engine {
namespace {

using protocol::SlotStatus;
namespace ctl = protocol::control;

class TelemetryTest : public ::testing::Test {
 protected:
  void SetStatus(uint32_t index, SlotStatus s) {
    ring_[size_t{index} * 16] = static_cast<uint32_t>(s);
  }
  std::vector<uint32_t> ring_ = std::vector<uint32_t>(size_t{100} * 16, 0);
  std::vector<uint32_t> control_ = std::vector<uint32_t>(ctl::Layout{4, 4}.TotalWords(), 0);
};

TEST_F(TelemetryTest, OccupancyAndQueueDepth) {
  for (uint32_t i = 0; i < 10; ++i) SetStatus(i, SlotStatus::kPublished);
  for (uint32_t i = 10; i < 15; ++i) SetStatus(i, SlotStatus::kClaimed);
  for (uint32_t i = 15; i < 35; ++i) SetStatus(i, SlotStatus::kDone);
  SetStatus(35, SlotStatus::kFault);
  SetStatus(36, SlotStatus::kRequeue);
  SetStatus(37, SlotStatus::kWaitIo);
  ring_[size_t{38} * 16] = 99;  // garbage status
  Occupancy occ;
  ASSERT_TRUE(DecodeOccupancy(ring_, &occ).ok());
  EXPECT_EQ(occ.total, 100u);
  EXPECT_EQ(occ.count(SlotStatus::kEmpty), 61u);
  EXPECT_EQ(occ.count(SlotStatus::kDone), 20u);
  EXPECT_EQ(occ.invalid, 1u);
  // Not EMPTY and not DONE: 10 + 5 + 1 + 1 + 1 + the invalid one.
  EXPECT_EQ(occ.queue_depth, 19u);
}

TEST_F(TelemetryTest, CountersFromOccupancyAndControl) {
  for (uint32_t i = 0; i < 25; ++i) SetStatus(i, SlotStatus::kPublished);
  for (uint32_t i = 25; i < 30; ++i) SetStatus(i, SlotStatus::kRequeue);
  for (uint32_t i = 30; i < 40; ++i) SetStatus(i, SlotStatus::kDone);
  SetStatus(40, SlotStatus::kFault);
  control_[ctl::kTenantFairnessFirst + 0] = 100;
  control_[ctl::kTenantFairnessFirst + 3] = 25;
  control_[ctl::kOpcodeMetricsFirst + 2] = 6;
  control_[ctl::kDoneCount] = 77;
  TelemetrySnapshot snap;
  ASSERT_TRUE(DecodeTelemetry(ring_, control_, {}, &snap).ok());
  const RuntimeCounters& c = snap.counters;
  EXPECT_EQ(c.idle_ppm, 590000u);
  EXPECT_EQ(c.frontier_density_bps, 3000u);
  EXPECT_EQ(c.occupancy_bps, 4100u);
  EXPECT_EQ(c.drained_slots, 59u);
  EXPECT_EQ(c.unreclaimed_done, 11u);
  EXPECT_EQ(c.requeue_slots, 5u);
  EXPECT_EQ(c.fault_slots, 1u);
  EXPECT_EQ(c.fairness_total, 125u);
  EXPECT_EQ(c.fairness_skew_bps, 7500u);
  EXPECT_EQ(snap.control.done_count, 77u);
  ASSERT_EQ(snap.control.opcode_metrics.size(), 1u);
  EXPECT_EQ(snap.control.opcode_metrics[0], std::make_pair(2u, 6u));
}

TEST_F(TelemetryTest, MalformedInputsFail) {
  Occupancy occ;
  EXPECT_EQ(DecodeOccupancy(absl::MakeConstSpan(ring_.data(), 17), &occ).code(),
            absl::StatusCode::kInvalidArgument);
  ControlSnapshot cs;
  EXPECT_EQ(DecodeControl(absl::MakeConstSpan(control_.data(), 100), &cs).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TelemetryTest, WindowsGroupByTicketAndOpcode) {
  auto window_slot = [&](uint32_t i, uint32_t op, uint32_t ticket, uint32_t cls, SlotStatus s) {
    ring_[i * 16 + protocol::kWordOpcode] = op;
    ring_[i * 16 + protocol::kWordArg0] = ticket;
    ring_[i * 16 + protocol::kWordArg0 + 1] = cls;
    SetStatus(i, s);
  };
  window_slot(0, 40, 7, 0, SlotStatus::kDone);
  window_slot(1, 40, 7, 1, SlotStatus::kPublished);
  window_slot(2, 40, 7, 1, SlotStatus::kPublished);
  window_slot(3, 41, 7, 0, SlotStatus::kClaimed);
  window_slot(4, 40, 3, 0, SlotStatus::kFault);
  window_slot(5, 99, 3, 0, SlotStatus::kDone);   // not a window opcode
  window_slot(6, 40, 3, 0, SlotStatus::kEmpty);  // empty slots are not counted
  const uint32_t window_ops[] = {40, 41};
  std::vector<WindowGroup> groups;
  ASSERT_TRUE(DecodeWindows(ring_, window_ops, &groups).ok());
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].ticket, 3u);
  EXPECT_EQ(groups[0].by_status[static_cast<uint32_t>(SlotStatus::kFault)], 1u);
  EXPECT_EQ(groups[1].ticket, 7u);
  EXPECT_EQ(groups[1].opcode, 40u);
  EXPECT_EQ(groups[1].by_class[0], 1u);
  EXPECT_EQ(groups[1].by_class[1], 2u);
  EXPECT_EQ(groups[1].by_status[static_cast<uint32_t>(SlotStatus::kPublished)], 2u);
  EXPECT_EQ(groups[2].opcode, 41u);
}

TEST_F(TelemetryTest, WarmPollDoesNotAllocate) {
  for (uint32_t i = 0; i < 50; ++i) {
    ring_[i * 16 + protocol::kWordOpcode] = 40;
    ring_[i * 16 + protocol::kWordArg0] = i % 5;
    SetStatus(i, SlotStatus::kPublished);
  }
  for (uint32_t op = 0; op < 32; ++op) control_[ctl::kOpcodeMetricsFirst + op] = op + 1;
  const uint32_t window_ops[] = {40};
  TelemetrySnapshot snap;
  ASSERT_TRUE(DecodeTelemetry(ring_, control_, window_ops, &snap).ok());
  const auto* windows = snap.windows.data();
  const auto* metrics = snap.control.opcode_metrics.data();
  for (int poll = 0; poll < 3; ++poll) {
    ASSERT_TRUE(DecodeTelemetry(ring_, control_, window_ops, &snap).ok());
    EXPECT_EQ(snap.windows.data(), windows);
    EXPECT_EQ(snap.control.opcode_metrics.data(), metrics);
  }
  EXPECT_EQ(snap.windows.size(), 5u);
  EXPECT_EQ(snap.control.opcode_metrics.size(), 32u);
}

TEST(WatchdogTest, StallRuleAndWrap) {
  ControlSnapshot before, after;
  Occupancy busy;
  busy.queue_depth = 3;
  busy.by_status[static_cast<uint32_t>(SlotStatus::kFault)] = 1;
  before.done_count = after.done_count = 500;
  WatchdogReport r = EvaluateWatchdog(before, after, busy);
  EXPECT_TRUE(r.suspected_stall);
  EXPECT_EQ(r.faults, 1u);
  Occupancy idle;
  EXPECT_FALSE(EvaluateWatchdog(before, after, idle).suspected_stall) << "no work is no stall";
  before.done_count = UINT32_MAX - 1;
  after.done_count = 2;  // wrapped: progress of 4
  r = EvaluateWatchdog(before, after, busy);
  EXPECT_EQ(r.done_delta, 4u);
  EXPECT_FALSE(r.suspected_stall) << "a wrapped counter is progress, not an error";
}

}  // namespace
}  // namespace mk::engine
