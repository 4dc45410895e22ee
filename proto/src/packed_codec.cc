#include "mk/proto/packed_codec.h"

#include "absl/strings/str_cat.h"

namespace mk::proto {

absl::Status CheckPackedSize(size_t bytes, absl::string_view field, absl::string_view records) {
  if (bytes % kPackedBytes == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", bytes, " bytes is not a whole number of 64-byte ", records));
}

absl::StatusOr<PackedCompletion> DecodePackedCompletion(const char* image, size_t index) {
  const PackedWords w = LoadPackedWords(image);
  PackedCompletion c;
  const uint32_t status = w[protocol::kWordStatus];
  switch (static_cast<PackedStatus>(status)) {
    case PackedStatus::kDone:
    case PackedStatus::kFault:
    case PackedStatus::kCancelled:
      c.status = static_cast<PackedStatus>(status);
      break;
    default:
      return absl::DataLossError(absl::StrCat(
          "packed_completions[", index, "]: STATUS word ", status,
          " is none of 3 (DONE), 7 (FAULT), 0xFFFFFFFF (CANCELLED); the stream is corrupt"));
  }
  c.ticket = uint64_t{w[kWordTicketLow]} | uint64_t{w[kWordTicketHigh]} << 32;
  std::memcpy(c.words.data(), &w[protocol::kWordArg0], sizeof(c.words));
  return c;
}

}  // namespace mk::proto
