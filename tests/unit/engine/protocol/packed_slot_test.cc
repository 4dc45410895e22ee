#include "mk/engine/packed_slot.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mk::engine {
namespace {

using ::testing::HasSubstr;
namespace op = protocol::opcode;

TEST(PackedSlotTest, RoundTripsEveryInnerOp) {
  std::vector<InnerOp> ops = {
      {op::kStoreU32, {5, 1}}, {op::kAtomicAdd, {2, 1}}, {op::kLoadU32, {1}}};
  auto args = EncodePackedSlot(ops);
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ((*args)[0], 3u);
  auto decoded = DecodePackedSlot(*args);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, ops);
}

TEST(PackedSlotTest, ElevenNopsFitAndAllDecode) {
  std::vector<InnerOp> ops(11, InnerOp{op::kNop, {}});
  auto args = EncodePackedSlot(ops);
  ASSERT_TRUE(args.ok());
  EXPECT_EQ(DecodePackedSlot(*args)->size(), 11u) << "more than vyre's 4; none skipped";
  ops.push_back({op::kNop, {}});
  EXPECT_EQ(EncodePackedSlot(ops).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PackedSlotTest, RejectsWhatAnEngineCouldNotRun) {
  EXPECT_THAT(EncodePackedSlot({}).status().message(), HasSubstr("0 inner ops"));
  std::vector<InnerOp> fence = {{op::kBatchFence, {1, 2}}};
  EXPECT_THAT(EncodePackedSlot(fence).status().message(), HasSubstr("inner op 0 has opcode 7"));
  std::vector<InnerOp> bad_argc = {{op::kNop, {}}, {op::kStoreU32, {1}}};
  EXPECT_THAT(EncodePackedSlot(bad_argc).status().message(), HasSubstr("inner op 1"));
  std::vector<InnerOp> too_long(4, InnerOp{op::kCompareSwap, {1, 2, 3}});
  EXPECT_THAT(EncodePackedSlot(too_long).status().message(), HasSubstr("does not fit"));
}

TEST(PackedSlotTest, DecodeBoundsChecksMalformedWords) {
  PackedArgs args{};
  EXPECT_THAT(DecodePackedSlot(args).status().message(), HasSubstr("ARG0"));
  args[0] = 255;  // vyre accepts up to 255 and runs 4
  EXPECT_EQ(DecodePackedSlot(args).status().code(), absl::StatusCode::kInvalidArgument);
  args = {};
  args[0] = 2;
  args[1] = protocol::packed::HeaderWord(op::kMemcpy, 3);
  args[5] = protocol::packed::HeaderWord(op::kCompareSwap, 3);
  args[9] = 0;
  auto ok = DecodePackedSlot(args);
  ASSERT_TRUE(ok.ok()) << ok.status();
  args[0] = 3;
  args[9] = protocol::packed::HeaderWord(op::kCompareSwap, 3);  // args would run past ARG11
  EXPECT_THAT(DecodePackedSlot(args).status().message(), HasSubstr("past ARG11"));
}

}  // namespace
}  // namespace mk::engine
