// The wire <-> engine conversions: what a PublishRequest may carry and the precise error for
// what it may not, and how completions leave (typed and packed).
#include "convert.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/proto/packed_codec.h"

namespace mk::server {
namespace {

using ::testing::HasSubstr;

TEST(DecodePublishTest, TypedSlotsKeepTheirFieldsAndDefaultToNormalPriority) {
  v1::PublishRequest request;
  v1::Slot* a = request.mutable_slots()->add_slots();
  a->set_opcode(2);
  a->add_args(5);
  a->add_args(7);
  v1::Slot* b = request.mutable_slots()->add_slots();
  b->set_opcode(3);
  b->set_priority(0);
  auto slots = DecodePublish(request);
  ASSERT_TRUE(slots.ok()) << slots.status();
  ASSERT_EQ(slots->size(), 2u);
  EXPECT_EQ((*slots)[0].opcode, 2u);
  EXPECT_EQ((*slots)[0].priority, protocol::kDefaultPriority) << "unset means NORMAL";
  EXPECT_EQ((*slots)[0].args[0], 5u);
  EXPECT_EQ((*slots)[0].args[1], 7u);
  EXPECT_EQ((*slots)[0].args[2], 0u) << "missing words are zero";
  EXPECT_EQ((*slots)[1].priority, 0u) << "an explicit CRITICAL is kept, not defaulted";
}

TEST(DecodePublishTest, TooManyArgumentWordsNameTheSlot) {
  v1::PublishRequest request;
  request.mutable_slots()->add_slots();
  v1::Slot* bad = request.mutable_slots()->add_slots();
  for (int i = 0; i < 13; ++i) bad->add_args(i);
  auto slots = DecodePublish(request);
  EXPECT_EQ(slots.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(slots.status().message(), HasSubstr("slot 1: args has 13 words"));
}

TEST(DecodePublishTest, PackedSlotsDecodeAndAPartialSlotIsRejected) {
  std::string packed(2 * proto::kPackedBytes, '\0');
  proto::PackedSlot slot;
  slot.opcode = 4;
  slot.priority = 1;
  slot.args[11] = 99;
  proto::EncodePackedSlot(slot, packed.data() + proto::kPackedBytes);
  v1::PublishRequest request;
  request.set_packed_slots(packed);
  auto slots = DecodePublish(request);
  ASSERT_TRUE(slots.ok()) << slots.status();
  ASSERT_EQ(slots->size(), 2u);
  EXPECT_EQ((*slots)[1].opcode, 4u);
  EXPECT_EQ((*slots)[1].priority, 1u);
  EXPECT_EQ((*slots)[1].args[11], 99u);
  request.set_packed_slots(packed.substr(0, 100));
  auto partial = DecodePublish(request);
  EXPECT_EQ(partial.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(partial.status().message(), HasSubstr("packed_slots: 100 bytes"));
}

TEST(DecodePublishTest, AnEmptyRequestSaysWhatToSet) {
  auto empty = DecodePublish(v1::PublishRequest());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("set `slots` (typed) or `packed_slots`"));
  v1::PublishRequest no_slots;
  no_slots.mutable_slots();
  EXPECT_EQ(DecodePublish(no_slots).status().code(), absl::StatusCode::kInvalidArgument);
}

engine::Completion MakeCompletion(engine::CompletionStatus status) {
  engine::Completion c;
  c.ticket = (uint64_t{7} << 32) | 9;
  c.status = status;
  if (status == engine::CompletionStatus::kDone) c.results[0] = 42;
  if (status == engine::CompletionStatus::kFault) {
    c.fault_code = static_cast<uint32_t>(protocol::FaultCode::kOutOfBounds);
    c.fault_detail = 100000;
  }
  return c;
}

TEST(CompletionToWireTest, TypedCompletionsCarryResultsOrTheFault) {
  v1::Completion done, fault, cancelled;
  ToProto(MakeCompletion(engine::CompletionStatus::kDone), &done);
  ToProto(MakeCompletion(engine::CompletionStatus::kFault), &fault);
  ToProto(MakeCompletion(engine::CompletionStatus::kCancelled), &cancelled);
  EXPECT_EQ(done.status(), v1::COMPLETION_STATUS_DONE);
  ASSERT_EQ(done.result_size(), 12);
  EXPECT_EQ(done.result(0), 42u);
  EXPECT_EQ(fault.status(), v1::COMPLETION_STATUS_FAULT);
  EXPECT_EQ(fault.fault_code(), 2u);
  EXPECT_EQ(fault.fault_detail(), 100000u);
  EXPECT_EQ(fault.result_size(), 0);
  EXPECT_EQ(cancelled.status(), v1::COMPLETION_STATUS_CANCELLED);
  EXPECT_EQ(cancelled.ticket(), (uint64_t{7} << 32) | 9);
}

TEST(CompletionToWireTest, PackedCompletionsDecodeWithTheSharedCodec) {
  for (auto status : {engine::CompletionStatus::kDone, engine::CompletionStatus::kFault,
                      engine::CompletionStatus::kCancelled}) {
    std::string image(proto::kPackedBytes, '\x55');
    AppendPacked(MakeCompletion(status), image.data());
    auto decoded = proto::DecodePackedCompletion(image.data(), 0);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->ticket, (uint64_t{7} << 32) | 9);
    switch (status) {
      case engine::CompletionStatus::kDone:
        EXPECT_EQ(decoded->status, proto::PackedStatus::kDone);
        EXPECT_EQ(decoded->words[0], 42u);
        break;
      case engine::CompletionStatus::kFault:
        EXPECT_EQ(decoded->status, proto::PackedStatus::kFault);
        EXPECT_EQ(decoded->words[0], 2u);
        EXPECT_EQ(decoded->words[1], 100000u);
        break;
      case engine::CompletionStatus::kCancelled:
        EXPECT_EQ(decoded->status, proto::PackedStatus::kCancelled);
        EXPECT_EQ(decoded->words[0], 0u) << "every other byte is written: no stale bytes leak";
        break;
    }
  }
}

}  // namespace
}  // namespace mk::server
