// The packed wire forms of mk.v1: PublishRequest.packed_slots and
// CompletionBatch.packed_completions, N x 64-byte images of 16 little-endian uint32 words in the
// ring slot's layout (docs/protocol.md, "Ring slot"). One codec for the server, the C++ client
// and the engine's ring ports; it needs no protobuf.
//
// A slot image is a ring slot (mk/engine/protocol.h, section 1): STATUS, OPCODE, TENANT,
// PRIORITY, then the 12 argument words. Clients leave STATUS and TENANT zero; the server ignores
// and overwrites them.
// A completion image: STATUS holds 3 (DONE), 7 (FAULT) or 0xFFFFFFFF (CANCELLED); words 2 and
// 3 the ticket's low and high halves; words 4..15 the 12 result words (FAULT: the fault code
// and its detail word, then zeros).
//
// Thread safety: stateless functions.
#ifndef MK_PROTO_PACKED_CODEC_H_
#define MK_PROTO_PACKED_CODEC_H_

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mk/engine/protocol.h"

namespace mk::proto {

// An image is a ring slot's 16 words; word positions are protocol::kWord*.
inline constexpr size_t kPackedBytes = protocol::kSlotBytes;
inline constexpr uint32_t kPackedWords = protocol::kSlotWords;
inline constexpr uint32_t kPackedArgWords = protocol::kArgWords;
// A completion image carries its ticket where a slot has TENANT and PRIORITY.
inline constexpr uint32_t kWordTicketLow = protocol::kWordTenant;
inline constexpr uint32_t kWordTicketHigh = protocol::kWordPriority;

using PackedWords = std::array<uint32_t, kPackedWords>;

// The 16 words of one image, in and out of its 64 bytes (the words are little-endian on the
// wire, and every host this builds for is little-endian: a copy).
static_assert(std::endian::native == std::endian::little, "packed images are little-endian");
inline PackedWords LoadPackedWords(const char* image) {
  PackedWords words;
  std::memcpy(words.data(), image, kPackedBytes);
  return words;
}
inline void StorePackedWords(const PackedWords& words, char* image) {
  std::memcpy(image, words.data(), kPackedBytes);
}

// INVALID_ARGUMENT when `bytes` is not a whole number of 64-byte images: "<field>: <bytes> bytes
// is not a whole number of 64-byte <records>". Callers add what to do; it depends on who sent it.
absl::Status CheckPackedSize(size_t bytes, absl::string_view field, absl::string_view records);

// One slot of PublishRequest.packed_slots.
struct PackedSlot {
  uint32_t opcode = 0;
  uint32_t priority = protocol::kDefaultPriority;
  std::array<uint32_t, kPackedArgWords> args{};
  friend bool operator==(const PackedSlot&, const PackedSlot&) = default;
};
// Writes the slot's image (STATUS and TENANT zero) at `image` (64 bytes).
inline void EncodePackedSlot(const PackedSlot& slot, char* image) {
  PackedWords w{};
  w[protocol::kWordOpcode] = slot.opcode;
  w[protocol::kWordPriority] = slot.priority;
  std::memcpy(&w[protocol::kWordArg0], slot.args.data(), sizeof(slot.args));
  StorePackedWords(w, image);
}
// Reads a slot image; STATUS and TENANT are ignored.
inline PackedSlot DecodePackedSlot(const char* image) {
  const PackedWords w = LoadPackedWords(image);
  PackedSlot slot;
  slot.opcode = w[protocol::kWordOpcode];
  slot.priority = w[protocol::kWordPriority];
  std::memcpy(slot.args.data(), &w[protocol::kWordArg0], sizeof(slot.args));
  return slot;
}

// One completion of CompletionBatch.packed_completions.
enum class PackedStatus : uint32_t {
  kDone = static_cast<uint32_t>(protocol::SlotStatus::kDone),
  kFault = static_cast<uint32_t>(protocol::SlotStatus::kFault),
  kCancelled = 0xFFFFFFFFu,  // no slot status: the slot never ran
};
struct PackedCompletion {
  uint64_t ticket = 0;
  PackedStatus status = PackedStatus::kDone;
  // DONE: the result words. FAULT: words[0] the fault code, words[1] its detail. CANCELLED: 0.
  std::array<uint32_t, kPackedArgWords> words{};
  friend bool operator==(const PackedCompletion&, const PackedCompletion&) = default;
};
// Inline: the server encodes every completion of a packed stream with it.
inline void EncodePackedCompletion(const PackedCompletion& completion, char* image) {
  PackedWords w{};
  w[protocol::kWordStatus] = static_cast<uint32_t>(completion.status);
  w[kWordTicketLow] = static_cast<uint32_t>(completion.ticket);
  w[kWordTicketHigh] = static_cast<uint32_t>(completion.ticket >> 32);
  std::memcpy(&w[protocol::kWordArg0], completion.words.data(), sizeof(completion.words));
  StorePackedWords(w, image);
}
// DATA_LOSS naming completion `index` when the STATUS word is none of the three values.
absl::StatusOr<PackedCompletion> DecodePackedCompletion(const char* image, size_t index);

}  // namespace mk::proto

#endif  // MK_PROTO_PACKED_CODEC_H_
