#include "mk/engine/ring_view.h"

#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mk::engine {
namespace {

using ::testing::HasSubstr;
using protocol::SlotStatus;

SlotPayload MakePayload(uint32_t seed) {
  SlotPayload p;
  p.opcode = protocol::opcode::kAtomicAdd;
  p.tenant = seed % 7;
  p.priority = seed % protocol::kPriorityCount;
  for (uint32_t i = 0; i < protocol::kArgWords; ++i) p.args[i] = seed * 100 + i;
  return p;
}

TEST(RingViewTest, PublishReadRoundTrip) {
  std::vector<uint32_t> words(8 * protocol::kSlotWords);
  auto ring = RingView::Create(absl::MakeSpan(words));
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->slot_count(), 8u);
  for (uint32_t i = 0; i < 8; ++i) ASSERT_TRUE(ring->Publish(i, MakePayload(i)).ok());
  for (uint32_t i = 0; i < 8; ++i) {
    EXPECT_EQ(*ring->LoadStatus(i), SlotStatus::kPublished);
    EXPECT_EQ(*ring->Read(i), MakePayload(i));
  }
  // STATUS is word 0 of each slot; payload words follow the protocol's offsets.
  EXPECT_EQ(words[3 * 16 + protocol::kWordStatus], 1u);
  EXPECT_EQ(words[3 * 16 + protocol::kWordOpcode], protocol::opcode::kAtomicAdd);
  EXPECT_EQ(words[3 * 16 + protocol::kWordArg0 + 11], 311u);
}

TEST(RingViewTest, PublishOnlyIntoEmpty) {
  std::vector<uint32_t> words(2 * protocol::kSlotWords);
  auto ring = *RingView::Create(absl::MakeSpan(words));
  ASSERT_TRUE(ring.Publish(1, MakePayload(1)).ok());
  absl::Status again = ring.Publish(1, MakePayload(2));
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.message(), HasSubstr("PUBLISHED"));
  EXPECT_EQ(*ring.Read(1), MakePayload(1)) << "a rejected publish must not touch the slot";
}

TEST(RingViewTest, OutOfRangeIndicesRejected) {
  std::vector<uint32_t> words(4 * protocol::kSlotWords);
  auto ring = *RingView::Create(absl::MakeSpan(words));
  for (uint64_t bad : {uint64_t{4}, uint64_t{UINT32_MAX}, uint64_t{1} << 40}) {
    EXPECT_EQ(ring.LoadStatus(bad).status().code(), absl::StatusCode::kOutOfRange) << bad;
    EXPECT_EQ(ring.Read(bad).status().code(), absl::StatusCode::kOutOfRange);
    EXPECT_EQ(ring.Publish(bad, {}).code(), absl::StatusCode::kOutOfRange);
    EXPECT_EQ(ring.Transition(bad, SlotStatus::kPublished, SlotStatus::kClaimed, Actor::kEngine)
                  .code(),
              absl::StatusCode::kOutOfRange);
  }
  EXPECT_THAT(ring.Read(UINT32_MAX).status().message(), HasSubstr("4294967295"));
}

TEST(RingViewTest, ShortAndMisalignedBuffersRejected) {
  std::vector<uint32_t> words(40);
  EXPECT_EQ(RingView::Create({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RingView::Create(absl::MakeSpan(words.data(), 15)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RingView::Create(absl::MakeSpan(words.data(), 33)).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto* bytes = reinterpret_cast<uint8_t*>(words.data());
  EXPECT_THAT(RingView::FromBytes(absl::MakeSpan(bytes + 1, 64)).status().message(),
              HasSubstr("aligned"));
  EXPECT_THAT(RingView::FromBytes(absl::MakeSpan(bytes, 100)).status().message(),
              HasSubstr("64-byte"));
  EXPECT_TRUE(RingView::FromBytes(absl::MakeSpan(bytes, 128)).ok());
}

TEST(RingViewTest, EveryLegalTransitionAcceptedEveryOtherRejected) {
  using S = SlotStatus;
  struct Move { S from, to; Actor actor; };
  const std::vector<Move> legal = {
      {S::kEmpty, S::kPublished, Actor::kHost},
      {S::kPublished, S::kClaimed, Actor::kEngine},
      {S::kYield, S::kClaimed, Actor::kEngine},
      {S::kRequeue, S::kClaimed, Actor::kEngine},
      {S::kClaimed, S::kDone, Actor::kEngine},
      {S::kClaimed, S::kFault, Actor::kEngine},
      {S::kClaimed, S::kWaitIo, Actor::kEngine},
      {S::kClaimed, S::kYield, Actor::kEngine},
      {S::kClaimed, S::kRequeue, Actor::kEngine},
      {S::kWaitIo, S::kDone, Actor::kEngine},
      {S::kWaitIo, S::kFault, Actor::kEngine},
      {S::kWaitIo, S::kDone, Actor::kHost},
      {S::kWaitIo, S::kFault, Actor::kHost},
      {S::kDone, S::kEmpty, Actor::kHost},
      {S::kFault, S::kEmpty, Actor::kHost},
      {S::kPublished, S::kEmpty, Actor::kHost},
      {S::kYield, S::kEmpty, Actor::kHost},
      {S::kRequeue, S::kEmpty, Actor::kHost},
      {S::kPublished, S::kFault, Actor::kHost},
      {S::kClaimed, S::kFault, Actor::kHost},
      {S::kYield, S::kFault, Actor::kHost},
      {S::kRequeue, S::kFault, Actor::kHost},
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

TEST(RingViewTest, TransitionIsCompareAndSwap) {
  std::vector<uint32_t> words(protocol::kSlotWords);
  auto ring = *RingView::Create(absl::MakeSpan(words));
  ASSERT_TRUE(ring.Publish(0, {}).ok());
  EXPECT_TRUE(ring.Transition(0, SlotStatus::kPublished, SlotStatus::kClaimed, Actor::kEngine).ok());
  absl::Status second =
      ring.Transition(0, SlotStatus::kPublished, SlotStatus::kClaimed, Actor::kEngine);
  EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.message(), HasSubstr("CLAIMED"));
}

TEST(RingViewTest, CompleteWritesResultsThenStatus) {
  std::vector<uint32_t> words(protocol::kSlotWords);
  auto ring = *RingView::Create(absl::MakeSpan(words));
  const uint32_t results[] = {7, 8};
  EXPECT_EQ(ring.Complete(0, SlotStatus::kDone, results).code(),
            absl::StatusCode::kFailedPrecondition)
      << "an EMPTY slot cannot complete";
  ASSERT_TRUE(ring.Publish(0, MakePayload(3)).ok());
  ASSERT_TRUE(ring.Transition(0, SlotStatus::kPublished, SlotStatus::kClaimed, Actor::kEngine).ok());
  EXPECT_EQ(ring.Complete(0, SlotStatus::kYield, results).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(ring.Complete(0, SlotStatus::kDone, results).ok());
  auto p = *ring.Read(0);
  EXPECT_EQ(p.args[0], 7u);
  EXPECT_EQ(p.args[1], 8u);
  EXPECT_EQ(p.args[2], 302u) << "words past the results keep their values";
}

TEST(RingViewTest, SlotBytesRoundTripAndLength) {
  SlotPayload p = MakePayload(5);
  uint8_t bytes[64];
  EncodeSlotBytes(p, SlotStatus::kPublished, absl::MakeSpan(bytes));
  EXPECT_EQ(bytes[0], 1);  // STATUS little-endian
  EXPECT_EQ(bytes[4], protocol::opcode::kAtomicAdd);
  auto decoded = DecodeSlotBytes(bytes, 0);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, p);
  auto short_slot = DecodeSlotBytes(absl::MakeConstSpan(bytes, 63), 9);
  EXPECT_EQ(short_slot.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_slot.status().message(), HasSubstr("slot 9"));
}

}  // namespace
}  // namespace mk::engine
