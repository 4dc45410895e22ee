#include "mk/engine/io_queue.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace mk::engine {

namespace io = protocol::io;
using io::IoStatus;

const char* IoStatusName(IoStatus status) {
  switch (status) {
    case IoStatus::kEmpty:
      return "EMPTY";
    case IoStatus::kPublished:
      return "PUBLISHED";
    case IoStatus::kClaimed:
      return "CLAIMED";
    case IoStatus::kReserved:
      return "RESERVED";
    case IoStatus::kOk:
      return "OK";
    case IoStatus::kError:
      return "ERROR";
  }
  return "INVALID_IO_STATUS";
}

absl::StatusOr<IoQueueView> IoQueueView::Create(absl::Span<uint32_t> words) {
  if (words.size() % io::kSlotWords != 0) {
    return absl::InvalidArgumentError(absl::StrCat("io queue: buffer of ", words.size(),
                                                   " words is not a whole number of 8-word slots"));
  }
  if (words.size() / io::kSlotWords < io::kMinSlots) {
    return absl::InvalidArgumentError(absl::StrCat("io queue: ", words.size() / io::kSlotWords,
                                                   " slots; the protocol needs at least 64"));
  }
  return IoQueueView(words.data(), static_cast<uint32_t>(words.size() / io::kSlotWords));
}

absl::Status IoQueueView::CheckIndex(uint32_t index) const {
  if (index < slot_count_) return absl::OkStatus();
  return absl::OutOfRangeError(
      absl::StrCat("io queue: slot ", index, " out of range; the queue has ", slot_count_));
}

absl::StatusOr<IoStatus> IoQueueView::LoadStatus(uint32_t index) const {
  if (absl::Status s = CheckIndex(index); !s.ok()) return s;
  return static_cast<IoStatus>(status_word(index).load(std::memory_order_acquire));
}

absl::StatusOr<uint32_t> IoQueueView::Publish(const IoRequest& request, uint32_t hint) const {
  for (uint32_t n = 0; n < slot_count_; ++n) {
    // 64-bit: hint + n wraps at 2^32, and the scan would then skip slots.
    const auto index = static_cast<uint32_t>((uint64_t{hint} + n) % slot_count_);
    uint32_t expected = static_cast<uint32_t>(IoStatus::kEmpty);
    if (!status_word(index).compare_exchange_strong(
            expected, static_cast<uint32_t>(IoStatus::kReserved), std::memory_order_acq_rel)) {
      continue;
    }
    uint32_t* w = words_ + size_t{index} * io::kSlotWords;
    w[io::kWordOpType] = static_cast<uint32_t>(request.op);
    w[io::kWordSrcHandle] = request.resource_id;
    w[io::kWordDstHandle] = request.residency;
    w[io::kWordOffsetLo] = static_cast<uint32_t>(request.offset);
    w[io::kWordOffsetHi] = static_cast<uint32_t>(request.offset >> 32);
    w[io::kWordByteCount] = request.byte_count;
    w[io::kWordTag] = request.tag;
    status_word(index).store(static_cast<uint32_t>(IoStatus::kPublished),
                             std::memory_order_release);
    return index;
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "io queue: all ", slot_count_, " slots are in use; requeue the ring slot and retry"));
}

void IoQueueView::Poll(std::vector<uint32_t>* out) const {
  out->clear();
  for (uint32_t i = 0; i < slot_count_; ++i) {
    if (status_word(i).load(std::memory_order_acquire) ==
        static_cast<uint32_t>(IoStatus::kPublished)) {
      out->push_back(i);
    }
  }
}

absl::Status IoQueueView::MoveStatus(uint32_t index, IoStatus from, IoStatus to,
                                     const char* what) const {
  uint32_t expected = static_cast<uint32_t>(from);
  if (status_word(index).compare_exchange_strong(expected, static_cast<uint32_t>(to),
                                                 std::memory_order_acq_rel)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "io queue: cannot ", what, " slot ", index, ": it is ",
      IoStatusName(static_cast<IoStatus>(expected)), ", expected ", IoStatusName(from)));
}

absl::StatusOr<IoRequest> IoQueueView::Claim(uint32_t index) const {
  if (absl::Status s = CheckIndex(index); !s.ok()) return s;
  if (absl::Status s = MoveStatus(index, IoStatus::kPublished, IoStatus::kClaimed, "claim");
      !s.ok()) {
    return s;
  }
  return Read(index);
}

absl::StatusOr<IoRequest> IoQueueView::Read(uint32_t index) const {
  if (absl::Status s = CheckIndex(index); !s.ok()) return s;
  status_word(index).load(std::memory_order_acquire);
  const uint32_t* w = words_ + size_t{index} * io::kSlotWords;
  IoRequest r;
  r.op = static_cast<io::OpType>(w[io::kWordOpType]);
  r.resource_id = w[io::kWordSrcHandle];
  r.residency = w[io::kWordDstHandle];
  r.offset = uint64_t{w[io::kWordOffsetLo]} | uint64_t{w[io::kWordOffsetHi]} << 32;
  r.byte_count = w[io::kWordByteCount];
  r.tag = w[io::kWordTag];
  return r;
}

absl::Status IoQueueView::Complete(const IoCompletion& c) const { return CompleteBatch({&c, 1}); }

absl::Status IoQueueView::CompleteBatch(absl::Span<const IoCompletion> completions) const {
  absl::flat_hash_set<uint32_t> seen;
  for (size_t i = 0; i < completions.size(); ++i) {
    const IoCompletion& c = completions[i];
    if (absl::Status s = CheckIndex(c.index); !s.ok()) return s;
    const auto status = static_cast<IoStatus>(status_word(c.index).load(std::memory_order_acquire));
    if (status != IoStatus::kClaimed) {
      return absl::FailedPreconditionError(absl::StrCat(
          "io queue: completion ", i, " names slot ", c.index, " which is ", IoStatusName(status),
          "; only CLAIMED requests can complete (nothing in this batch was applied)"));
    }
    if (!seen.insert(c.index).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "io queue: slot ", c.index, " completed twice in one batch (nothing was applied)"));
    }
    if (!c.ok && c.error_number == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "io queue: completion ", i, " is an error without an errno; pass the positive errno"));
    }
  }
  for (const IoCompletion& c : completions) {
    uint32_t* w = words_ + size_t{c.index} * io::kSlotWords;
    if (!c.ok) w[io::kWordByteCount] = c.error_number;
    status_word(c.index).store(static_cast<uint32_t>(c.ok ? IoStatus::kOk : IoStatus::kError),
                               std::memory_order_release);
  }
  return absl::OkStatus();
}

absl::Status IoQueueView::Recycle(uint32_t index) const {
  if (absl::Status s = CheckIndex(index); !s.ok()) return s;
  const auto status = static_cast<IoStatus>(status_word(index).load(std::memory_order_acquire));
  if (status != IoStatus::kOk && status != IoStatus::kError) {
    return absl::FailedPreconditionError(
        absl::StrCat("io queue: recycle slot ", index, " which is ", IoStatusName(status),
                     "; only completed (OK or ERROR) requests can be recycled"));
  }
  return MoveStatus(index, status, IoStatus::kEmpty, "recycle");
}

}  // namespace mk::engine
