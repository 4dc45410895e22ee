#include "soak_workload.h"

namespace mk::mkctl::soak {

namespace {
constexpr uint32_t kFirstFreeWord = 2;
constexpr uint32_t kFreeWords = 30;

uint32_t Pick(std::mt19937_64& rng, uint32_t n) { return static_cast<uint32_t>(rng() % n); }

client::Slot MakeSlot(uint32_t opcode, uint32_t priority, std::vector<uint32_t> args) {
  return client::Slot{opcode, priority, std::move(args)};
}
}  // namespace

Batch ValidBatch(std::mt19937_64& rng, size_t n, bool checked, uint32_t priority, int oob_percent) {
  Batch b;
  b.slots.reserve(n);
  b.kinds.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t word = kFirstFreeWord + Pick(rng, kFreeWords);
    if (static_cast<int>(Pick(rng, 100)) < oob_percent) {
      switch (Pick(rng, 3)) {
        case 0:
          b.Add(MakeSlot(op::kStoreU32, priority, {7, 0xFFFFFFF0u - Pick(rng, 16)}),
                SlotKind::kOutOfBounds);
          break;
        case 1:
          b.Add(MakeSlot(op::kLoadU32, priority, {0x7FFFFFFFu}), SlotKind::kOutOfBounds);
          break;
        default:  // index + count wraps 32 bits: the range check must not
          b.Add(MakeSlot(op::kScratchSum, priority, {0xFFFFFF00u, 512}), SlotKind::kOutOfBounds);
          break;
      }
      continue;
    }
    switch (Pick(rng, 5)) {
      case 0:
        b.Add(MakeSlot(op::kNop, priority, {}), SlotKind::kValid);
        break;
      case 1:
        b.Add(MakeSlot(op::kAtomicAdd, priority, {1, checked ? kCounterIndex : kSpareCounterIndex}),
              checked ? SlotKind::kCounter : SlotKind::kValid);
        break;
      case 2:
        b.Add(MakeSlot(op::kStoreU32, priority, {static_cast<uint32_t>(rng()), word}),
              SlotKind::kValid);
        break;
      case 3:
        b.Add(MakeSlot(op::kLoadU32, priority, {word}), SlotKind::kValid);
        break;
      default:
        b.Add(MakeSlot(op::kScratchSum, priority, {kFirstFreeWord, kFreeWords}), SlotKind::kValid);
        break;
    }
  }
  return b;
}

Batch ResourceBatch(std::mt19937_64& rng, uint32_t resource) {
  Batch b;
  const uint32_t which = Pick(rng, 3);
  if (which != 1) b.Add(MakeSlot(op::kLoadMiss, kPriorityNormal, {resource, 0}), SlotKind::kLoad);
  if (which != 0) {
    b.Add(MakeSlot(op::kChecksum, kPriorityNormal, {resource, 0, 0, 0}), SlotKind::kChecksum);
  }
  return b;
}

Batch BadResourceBatch(std::mt19937_64& rng) {
  Batch b;
  if (Pick(rng, 2) == 0) {
    b.Add(MakeSlot(op::kChecksum, kPriorityNormal, {kBadResourceId, 0, 0, 0}),
          SlotKind::kBadResource);
  } else {
    b.Add(MakeSlot(op::kLoadMiss, kPriorityNormal, {kBadResourceId + 1, 0}),
          SlotKind::kBadResource);
  }
  return b;
}

v1::PublishRequest ToRequest(const std::vector<client::Slot>& slots, bool packed,
                             absl::Duration wait) {
  v1::PublishRequest request;
  if (packed) {
    request.set_packed_slots(client::EncodePacked(slots));
  } else {
    for (const client::Slot& s : slots) {
      v1::Slot* out = request.mutable_slots()->add_slots();
      out->set_opcode(s.opcode);
      out->set_priority(s.priority);
      out->mutable_args()->Add(s.args.begin(), s.args.end());
    }
  }
  if (wait > absl::ZeroDuration()) {
    const int64_t ns = absl::ToInt64Nanoseconds(wait);
    request.mutable_wait()->set_seconds(ns / 1'000'000'000);
    request.mutable_wait()->set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
  }
  return request;
}

}  // namespace mk::mkctl::soak
