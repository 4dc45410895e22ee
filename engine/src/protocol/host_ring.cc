#include "mk/engine/host_ring.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "mk/base/page_memory.h"

namespace mk::engine {

namespace {
constexpr uint32_t kMaxSlots = 1u << 26;
}  // namespace

absl::StatusOr<std::unique_ptr<HostRing>> HostRing::Create(uint32_t slot_count) {
  if (slot_count == 0 || slot_count > kMaxSlots) {
    return absl::InvalidArgumentError(absl::StrCat("ring: ", slot_count,
                                                   " slots requested; choose 1..", kMaxSlots));
  }
  // Whole pages: an executor may register the ring with a device.
  const size_t bytes = size_t{slot_count} * protocol::kSlotBytes;
  void* memory = base::AllocatePages(bytes);
  if (memory == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("ring: cannot allocate ", bytes, " bytes; request fewer slots"));
  }
  return std::unique_ptr<HostRing>(new HostRing(static_cast<uint32_t*>(memory), slot_count));
}

HostRing::HostRing(uint32_t* words, uint32_t slot_count)
    : words_(words),
      view_(*RingView::Create({words, size_t{slot_count} * protocol::kSlotWords})),
      reserved_(new std::atomic<uint8_t>[slot_count]) {
  for (uint32_t i = 0; i < slot_count; ++i) reserved_[i].store(0, std::memory_order_relaxed);
}

HostRing::~HostRing() { std::free(words_); }

absl::StatusOr<uint32_t> HostRing::Publish(const SlotPayload& payload) {
  const uint32_t n = slot_count();
  const uint32_t start = publish_cursor_.fetch_add(1, std::memory_order_relaxed);
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t index = (start + k) % n;
    uint8_t expected = 0;
    if (!reserved_[index].compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
    if (absl::Status s = view_.Publish(index, payload); !s.ok()) {
      reserved_[index].store(0, std::memory_order_release);
      return s;
    }
    return index;
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "ring: all ", n, " slots are in flight; reap completions and retry"));
}

std::optional<uint32_t> HostRing::ClaimNext() {
  const uint32_t n = slot_count();
  const uint32_t start = claim_cursor_.fetch_add(1, std::memory_order_relaxed);
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t index = (start + k) % n;
    uint32_t s = view_.status_word(index).load(std::memory_order_acquire);
    if (!protocol::IsClaimable(static_cast<SlotStatus>(s))) continue;
    if (view_.status_word(index).compare_exchange_strong(
            s, static_cast<uint32_t>(SlotStatus::kClaimed), std::memory_order_acq_rel)) {
      return index;
    }
  }
  return std::nullopt;
}

absl::Status HostRing::Complete(uint32_t index, SlotStatus terminal,
                                absl::Span<const uint32_t> results) {
  return view_.Complete(index, terminal, results);
}

absl::StatusOr<ReapedSlot> HostRing::Reap(uint32_t index) {
  absl::StatusOr<SlotStatus> status = view_.LoadStatus(index);
  if (!status.ok()) return status.status();
  if (!protocol::IsTerminal(*status)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "ring: reap slot ", index, " which is ", SlotStatusName(*status),
        "; only DONE or FAULT slots can be reaped"));
  }
  absl::StatusOr<SlotPayload> payload = view_.Read(index);
  if (!payload.ok()) return payload.status();
  if (absl::Status s = view_.Transition(index, *status, SlotStatus::kEmpty, Actor::kHost); !s.ok()) {
    return s;
  }
  reserved_[index].store(0, std::memory_order_release);
  return ReapedSlot{index, *status, *payload};
}

}  // namespace mk::engine
