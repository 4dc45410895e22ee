// The slot state machine: every legal move accepted for its actor, every other one rejected.
#include "host/slot_state_machine.h"

#include <vector>

#include "gtest/gtest.h"
#include "mk/engine/slot.h"

namespace mk::engine::host {
namespace {

TEST(SlotStateMachineTest, EveryLegalTransitionAcceptedEveryOtherRejected) {
  using S = SlotStatus;
  struct Move {
    S from, to;
    Actor actor;
  };
  const std::vector<Move> legal = {
      {S::kEmpty, S::kPublished, Actor::kHost},   {S::kPublished, S::kClaimed, Actor::kEngine},
      {S::kYield, S::kClaimed, Actor::kEngine},   {S::kRequeue, S::kClaimed, Actor::kEngine},
      {S::kClaimed, S::kDone, Actor::kEngine},    {S::kClaimed, S::kFault, Actor::kEngine},
      {S::kClaimed, S::kWaitIo, Actor::kEngine},  {S::kClaimed, S::kYield, Actor::kEngine},
      {S::kClaimed, S::kRequeue, Actor::kEngine}, {S::kWaitIo, S::kDone, Actor::kEngine},
      {S::kWaitIo, S::kFault, Actor::kEngine},    {S::kWaitIo, S::kDone, Actor::kHost},
      {S::kWaitIo, S::kFault, Actor::kHost},      {S::kDone, S::kEmpty, Actor::kHost},
      {S::kFault, S::kEmpty, Actor::kHost},       {S::kPublished, S::kEmpty, Actor::kHost},
      {S::kYield, S::kEmpty, Actor::kHost},       {S::kRequeue, S::kEmpty, Actor::kHost},
      {S::kPublished, S::kFault, Actor::kHost},   {S::kClaimed, S::kFault, Actor::kHost},
      {S::kYield, S::kFault, Actor::kHost},       {S::kRequeue, S::kFault, Actor::kHost},
  };
  int accepted = 0;
  for (Actor actor : {Actor::kHost, Actor::kEngine}) {
    for (uint32_t f = 0; f < protocol::kSlotStatusCount; ++f) {
      for (uint32_t t = 0; t < protocol::kSlotStatusCount; ++t) {
        const S from = static_cast<S>(f), to = static_cast<S>(t);
        bool expect = false;
        for (const Move& m : legal) expect |= m.from == from && m.to == to && m.actor == actor;
        absl::Status s = CheckTransition(from, to, actor);
        EXPECT_EQ(s.ok(), expect) << SlotStatusName(from) << " -> " << SlotStatusName(to)
                                  << (actor == Actor::kHost ? " host" : " engine");
        if (!s.ok()) EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
        accepted += s.ok();
      }
    }
  }
  EXPECT_EQ(accepted, static_cast<int>(legal.size()));
  EXPECT_EQ(CheckTransition(static_cast<S>(9), S::kEmpty, Actor::kHost).code(),
            absl::StatusCode::kInvalidArgument);
}

#ifndef NDEBUG
TEST(SlotStateMachineDeathTest, AnIllegalMoveAbortsInBuildsWithAssertions) {
  EXPECT_DEATH(MK_DCHECK_TRANSITION(SlotStatus::kDone, SlotStatus::kClaimed, Actor::kEngine, 7),
               "slot 7: ring: illegal transition DONE -> CLAIMED");
}
#endif

}  // namespace
}  // namespace mk::engine::host
