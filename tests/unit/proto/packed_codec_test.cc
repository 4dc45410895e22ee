// The packed 64-byte forms shared by the server, the client and the engine's ring ports: exact
// byte positions (the wire contract), round trips, and the errors for malformed input.
#include "mk/proto/packed_codec.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mk::proto {
namespace {

using ::testing::HasSubstr;

uint32_t WordAt(const std::string& image, uint32_t word) {
  const auto* p = reinterpret_cast<const unsigned char*>(image.data() + size_t{4} * word);
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

TEST(PackedCodecTest, SlotImageHasTheRingLayoutLittleEndian) {
  PackedSlot slot;
  slot.opcode = 0x01020304;
  slot.priority = 4;
  for (uint32_t i = 0; i < kPackedArgWords; ++i) slot.args[i] = 0xA0000000u + i;
  std::string image(kPackedBytes, '\x55');
  EncodePackedSlot(slot, image.data());
  EXPECT_EQ(WordAt(image, 0), 0u) << "STATUS is left zero";
  EXPECT_EQ(static_cast<unsigned char>(image[4]), 0x04) << "little-endian OPCODE";
  EXPECT_EQ(WordAt(image, 1), 0x01020304u);
  EXPECT_EQ(WordAt(image, 2), 0u) << "TENANT is left zero: the server sets it";
  EXPECT_EQ(WordAt(image, 3), 4u);
  for (uint32_t i = 0; i < kPackedArgWords; ++i) EXPECT_EQ(WordAt(image, 4 + i), 0xA0000000u + i);
  EXPECT_EQ(DecodePackedSlot(image.data()), slot);
}

TEST(PackedCodecTest, DecodeIgnoresStatusAndTenant) {
  PackedSlot slot;
  slot.opcode = 2;
  std::string image(kPackedBytes, '\0');
  EncodePackedSlot(slot, image.data());
  image[0] = 7;  // STATUS
  image[8] = 9;  // TENANT
  EXPECT_EQ(DecodePackedSlot(image.data()), slot);
}

TEST(PackedCodecTest, CompletionImagesRoundTripForEveryStatus) {
  for (PackedStatus status :
       {PackedStatus::kDone, PackedStatus::kFault, PackedStatus::kCancelled}) {
    PackedCompletion c;
    c.ticket = 0x1122334455667788ull;
    c.status = status;
    if (status != PackedStatus::kCancelled) c.words = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    std::string image(kPackedBytes, '\0');
    EncodePackedCompletion(c, image.data());
    EXPECT_EQ(WordAt(image, 0), static_cast<uint32_t>(status));
    EXPECT_EQ(WordAt(image, 2), 0x55667788u) << "ticket low half in word 2";
    EXPECT_EQ(WordAt(image, 3), 0x11223344u) << "ticket high half in word 3";
    auto decoded = DecodePackedCompletion(image.data(), 0);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, c);
  }
}

TEST(PackedCodecTest, UnknownCompletionStatusIsDataLossNamingTheRecord) {
  std::string image(kPackedBytes, '\0');
  image[0] = 5;
  auto decoded = DecodePackedCompletion(image.data(), 17);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(decoded.status().message(), HasSubstr("packed_completions[17]"));
}

TEST(PackedCodecTest, SizeCheckNamesTheFieldAndTheLength) {
  EXPECT_TRUE(CheckPackedSize(0, "packed_slots", "slots").ok());
  EXPECT_TRUE(CheckPackedSize(128, "packed_slots", "slots").ok());
  const absl::Status s = CheckPackedSize(100, "packed_slots", "slots");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "packed_slots: 100 bytes is not a whole number of 64-byte slots");
}

}  // namespace
}  // namespace mk::proto
