#include "mk/proto/packed_codec.h"

#include "absl/strings/str_cat.h"

namespace mk::proto {

absl::Status CheckPackedSize(size_t bytes, absl::string_view field, absl::string_view records) {
  if (bytes % kPackedBytes == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", bytes, " bytes is not a whole number of 64-byte ", records));
}

void EncodePackedSlot(const PackedSlot& slot, char* image) {
  PackedWords w{};
  w[packed_word::kOpcode] = slot.opcode;
  w[packed_word::kPriority] = slot.priority;
  std::memcpy(&w[packed_word::kArg0], slot.args.data(), sizeof(slot.args));
  StorePackedWords(w, image);
}

void EncodePackedCompletion(const PackedCompletion& completion, char* image) {
  PackedWords w{};
  w[packed_word::kStatus] = static_cast<uint32_t>(completion.status);
  w[packed_word::kTicketLow] = static_cast<uint32_t>(completion.ticket);
  w[packed_word::kTicketHigh] = static_cast<uint32_t>(completion.ticket >> 32);
  std::memcpy(&w[packed_word::kArg0], completion.words.data(), sizeof(completion.words));
  StorePackedWords(w, image);
}

absl::StatusOr<PackedCompletion> DecodePackedCompletion(const char* image, size_t index) {
  const PackedWords w = LoadPackedWords(image);
  PackedCompletion c;
  const uint32_t status = w[packed_word::kStatus];
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
  c.ticket = uint64_t{w[packed_word::kTicketLow]} | uint64_t{w[packed_word::kTicketHigh]} << 32;
  std::memcpy(c.words.data(), &w[packed_word::kArg0], sizeof(c.words));
  return c;
}

}  // namespace mk::proto
