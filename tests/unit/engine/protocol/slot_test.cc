// The printable names of slot statuses and fault codes, which telemetry labels and messages use.
#include "mk/engine/slot.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace mk::engine {
namespace {

TEST(SlotTest, EveryStatusHasItsOwnName) {
  std::set<std::string> names;
  for (uint32_t s = 0; s < protocol::kSlotStatusCount; ++s) {
    names.insert(SlotStatusName(static_cast<SlotStatus>(s)));
  }
  EXPECT_EQ(names.size(), protocol::kSlotStatusCount);
  EXPECT_STREQ(SlotStatusName(SlotStatus::kWaitIo), "WAIT_IO");
  EXPECT_STREQ(SlotStatusName(static_cast<SlotStatus>(8)), "INVALID_STATUS");
}

TEST(SlotTest, FaultCodesAreNamedAsInTheProtocol) {
  EXPECT_STREQ(FaultCodeName(protocol::FaultCode::kOutOfBounds), "OUT_OF_BOUNDS");
  EXPECT_STREQ(FaultCodeName(protocol::FaultCode::kEngineRestart), "ENGINE_RESTART");
  EXPECT_STREQ(FaultCodeName(static_cast<protocol::FaultCode>(99)), "INVALID_FAULT_CODE");
}

TEST(SlotTest, PayloadDefaultsToANormalNop) {
  const SlotPayload p;
  EXPECT_EQ(p.opcode, protocol::opcode::kNop);
  EXPECT_EQ(p.priority, protocol::kDefaultPriority);
}

}  // namespace
}  // namespace mk::engine
