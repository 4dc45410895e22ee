// libFuzzer target: the io-queue codec (mk/engine/io_queue.h, docs/protocol.md "Io queue and
// LOAD_MISS"), the words engine workers and the host io loop share.
//
// Input: a buffer length (mostly a valid queue of 64..127 slots), the slots' starting states
// (empty, or any status with arbitrary request words), then operations: Publish with any hint,
// Poll, Claim, Complete and CompleteBatch, Recycle, Read, LoadStatus, and stores of arbitrary
// STATUS words (a worker between its compare-and-swap and its PUBLISHED store, or garbage).
// Properties, against a model of the words:
// - Create accepts exactly whole 8-word slots, at least 64 of them;
// - Publish fails only when no slot is EMPTY, takes the first EMPTY slot scanning from the hint
//   (any 32-bit hint), and Read gives the request back;
// - every transition happens exactly when the documented state allows it (PUBLISHED -> CLAIMED
//   -> OK | ERROR -> EMPTY); a CompleteBatch with any bad completion changes nothing;
// - after every operation the whole buffer equals the model: no operation writes a word it
//   should not, and none reads or writes outside the buffer.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "fuzz/libfuzzer/fuzz_support.h"
#include "mk/engine/io_queue.h"
#include "mk/engine/protocol.h"

namespace mk::engine {
namespace {

namespace io = protocol::io;
using io::IoStatus;

constexpr uint32_t kStatuses[] = {0, 1, 2, 3, 0x10, 0x11};

class Harness {
 public:
  Harness(fuzz::Input* in, IoQueueView view, absl::Span<uint32_t> words)
      : in_(*in), view_(view), words_(words), model_(words.begin(), words.end()) {}

  void Run() {
    for (int n = 0; n < 128 && !in_.empty(); ++n) {
      switch (in_.Below(10)) {
        case 0:
          Publish();
          break;
        case 1:
          Poll();
          break;
        case 2:
          Claim(Index());
          break;
        case 3:
          CompleteBatch(in_.Below(5));
          break;
        case 4:
          CompleteBatch(1);
          break;
        case 5:
          Recycle(Index());
          break;
        case 6:
          Read(Index());
          break;
        case 7: {
          const uint32_t index = Index();
          const absl::StatusOr<IoStatus> status = view_.LoadStatus(index);
          MK_FUZZ_CHECK(status.ok() == (index < count()), status.status().ToString());
          if (status.ok()) MK_FUZZ_CHECK(static_cast<uint32_t>(*status) == Status(index), index);
          break;
        }
        case 8: {  // a worker mid-publish (RESERVED), or garbage
          const uint32_t index = in_.Below(count());
          SetStatus(index, in_.Bool() ? kStatuses[in_.Below(6)] : in_.U32());
          words_[Word(index, io::kWordStatus)] = Status(index);
          break;
        }
        default: {
          const uint32_t status = in_.Bool() ? kStatuses[in_.Below(6)] : in_.U32();
          const absl::string_view name = IoStatusName(static_cast<IoStatus>(status));
          const bool known =
              std::find(std::begin(kStatuses), std::end(kStatuses), status) != std::end(kStatuses);
          MK_FUZZ_CHECK((name == "INVALID_IO_STATUS") != known, status, " is ", name);
          break;
        }
      }
      CheckModel();
    }
  }

 private:
  uint32_t count() const { return view_.slot_count(); }
  static size_t Word(uint32_t index, uint32_t word) {
    return size_t{index} * io::kSlotWords + word;
  }
  uint32_t Status(uint32_t index) const { return model_[Word(index, io::kWordStatus)]; }
  void SetStatus(uint32_t index, uint32_t status) { model_[Word(index, io::kWordStatus)] = status; }
  bool Is(uint32_t index, IoStatus status) const {
    return Status(index) == static_cast<uint32_t>(status);
  }
  // Mostly in range or just past it; sometimes any value.
  uint32_t Index() { return in_.U8() < 240 ? in_.Below(count() + 4) : in_.U32(); }

  IoRequest ModelRequest(uint32_t index) const {
    const uint32_t* w = &model_[Word(index, 0)];
    IoRequest r;
    r.op = static_cast<io::OpType>(w[io::kWordOpType]);
    r.resource_id = w[io::kWordSrcHandle];
    r.residency = w[io::kWordDstHandle];
    r.offset = uint64_t{w[io::kWordOffsetLo]} | uint64_t{w[io::kWordOffsetHi]} << 32;
    r.byte_count = w[io::kWordByteCount];
    r.tag = w[io::kWordTag];
    return r;
  }

  void Publish() {
    IoRequest r;
    r.op = static_cast<io::OpType>(in_.Bool() ? 1 + in_.Below(3) : in_.U32());
    r.resource_id = in_.U32();
    r.residency = in_.U32();
    r.offset = in_.U64();
    r.byte_count = in_.U32();
    r.tag = in_.U32();
    const uint32_t hint = in_.Bool() ? in_.Below(count() * 2) : in_.U32();
    // The first EMPTY slot scanning from the hint, in exact arithmetic.
    std::optional<uint32_t> expected;
    for (uint64_t n = 0; n < count() && !expected; ++n) {
      const auto index = static_cast<uint32_t>((uint64_t{hint} + n) % count());
      if (Is(index, IoStatus::kEmpty)) expected = index;
    }
    const absl::StatusOr<uint32_t> index = view_.Publish(r, hint);
    MK_FUZZ_CHECK(index.ok() == expected.has_value(), index.status().ToString(), " (hint ", hint,
                  ", ", count(), " slots)");
    if (!index.ok()) {
      MK_FUZZ_CHECK(absl::IsResourceExhausted(index.status()), index.status().ToString());
      return;
    }
    MK_FUZZ_CHECK(*index == *expected, "Publish took slot ", *index, "; the first EMPTY one from ",
                  "hint ", hint, " is ", *expected, " (", count(), " slots)");
    uint32_t* w = &model_[Word(*index, 0)];
    w[io::kWordOpType] = static_cast<uint32_t>(r.op);
    w[io::kWordSrcHandle] = r.resource_id;
    w[io::kWordDstHandle] = r.residency;
    w[io::kWordOffsetLo] = static_cast<uint32_t>(r.offset);
    w[io::kWordOffsetHi] = static_cast<uint32_t>(r.offset >> 32);
    w[io::kWordByteCount] = r.byte_count;
    w[io::kWordTag] = r.tag;
    SetStatus(*index, static_cast<uint32_t>(IoStatus::kPublished));
    const absl::StatusOr<IoRequest> back = view_.Read(*index);
    MK_FUZZ_CHECK(back.ok() && *back == r, "Read after Publish of slot ", *index);
  }

  void Poll() {
    polled_.assign(3, 7);  // cleared first
    view_.Poll(&polled_);
    size_t published = 0;
    for (uint32_t i = 0; i < count(); ++i) {
      if (!Is(i, IoStatus::kPublished)) continue;
      MK_FUZZ_CHECK(published < polled_.size() && polled_[published] == i, "Poll missed slot ", i);
      ++published;
    }
    MK_FUZZ_CHECK(polled_.size() == published, polled_.size(), " polled, ", published,
                  " published");
  }

  void Claim(uint32_t index) {
    const absl::StatusOr<IoRequest> r = view_.Claim(index);
    if (index >= count()) {
      MK_FUZZ_CHECK(absl::IsOutOfRange(r.status()), r.status().ToString());
      return;
    }
    if (!Is(index, IoStatus::kPublished)) {
      MK_FUZZ_CHECK(absl::IsFailedPrecondition(r.status()), r.status().ToString());
      return;
    }
    MK_FUZZ_CHECK(r.ok(), r.status().ToString());
    MK_FUZZ_CHECK(*r == ModelRequest(index), "Claim of slot ", index, " read another request");
    SetStatus(index, static_cast<uint32_t>(IoStatus::kClaimed));
  }

  void CompleteBatch(uint32_t n) {
    claimed_.clear();
    for (uint32_t i = 0; i < count(); ++i) {
      if (Is(i, IoStatus::kClaimed)) claimed_.push_back(i);
    }
    std::vector<IoCompletion> completions(n);
    bool valid = true;
    absl::flat_hash_set<uint32_t> seen;
    for (IoCompletion& c : completions) {
      // Mostly a claimed slot, so that whole batches succeed.
      c.index = in_.Bool() && !claimed_.empty() ? claimed_[in_.Below(claimed_.size())] : Index();
      c.ok = in_.U8() < 160;
      c.error_number = c.ok ? in_.Below(2) : in_.Below(40);
      valid = valid && c.index < count() && Is(c.index, IoStatus::kClaimed) &&
              seen.insert(c.index).second && (c.ok || c.error_number != 0);
    }
    const absl::Status s =
        n == 1 && in_.Bool() ? view_.Complete(completions[0]) : view_.CompleteBatch(completions);
    MK_FUZZ_CHECK(s.ok() == valid, s.ToString());
    if (!s.ok()) {
      MK_FUZZ_CHECK(
          absl::IsOutOfRange(s) || absl::IsFailedPrecondition(s) || absl::IsInvalidArgument(s),
          s.ToString());
      return;  // CheckModel: nothing was applied
    }
    for (const IoCompletion& c : completions) {
      if (!c.ok) model_[Word(c.index, io::kWordByteCount)] = c.error_number;
      SetStatus(c.index, static_cast<uint32_t>(c.ok ? IoStatus::kOk : IoStatus::kError));
    }
  }

  void Recycle(uint32_t index) {
    const absl::Status s = view_.Recycle(index);
    if (index >= count()) {
      MK_FUZZ_CHECK(absl::IsOutOfRange(s), s.ToString());
      return;
    }
    const bool done = Is(index, IoStatus::kOk) || Is(index, IoStatus::kError);
    MK_FUZZ_CHECK(s.ok() == done, s.ToString());
    if (done) SetStatus(index, static_cast<uint32_t>(IoStatus::kEmpty));
  }

  void Read(uint32_t index) {
    const absl::StatusOr<IoRequest> r = view_.Read(index);
    MK_FUZZ_CHECK(r.ok() == (index < count()), r.status().ToString());
    if (r.ok()) MK_FUZZ_CHECK(*r == ModelRequest(index), "Read of slot ", index);
  }

  void CheckModel() const {
    if (std::memcmp(words_.data(), model_.data(), model_.size() * sizeof(uint32_t)) == 0) return;
    for (size_t i = 0; i < model_.size(); ++i) {
      MK_FUZZ_CHECK(words_[i] == model_[i], "word ", i, " (slot ", i / io::kSlotWords, ") is ",
                    words_[i], ", expected ", model_[i]);
    }
  }

  fuzz::Input& in_;
  IoQueueView view_;
  absl::Span<uint32_t> words_;
  std::vector<uint32_t> model_;
  std::vector<uint32_t> claimed_;  // capacity reused across operations
  std::vector<uint32_t> polled_;
};

void Fuzz(fuzz::Input& in) {
  const uint8_t shape = in.U8();
  const size_t size = shape < 224 ? size_t{io::kMinSlots + in.Below(64)} * io::kSlotWords
                                  : size_t{in.U8()} * 4 + in.Below(8);
  std::vector<uint32_t> words(size);
  const absl::StatusOr<IoQueueView> view = IoQueueView::Create(absl::MakeSpan(words));
  const bool valid = size % io::kSlotWords == 0 && size / io::kSlotWords >= io::kMinSlots;
  MK_FUZZ_CHECK(view.ok() == valid, view.status().ToString(), " for ", size, " words");
  if (!view.ok()) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(view.status()), view.status().ToString());
    return;
  }
  MK_FUZZ_CHECK(view->slot_count() == size / io::kSlotWords, "slot_count");
  if (in.Bool()) {  // a queue in use: any states, any request words
    std::minstd_rand random(in.U32());
    for (size_t i = 0; i < size; ++i) words[i] = random();
    for (size_t s = 0; s < view->slot_count(); ++s) {
      const uint32_t pick = in.Below(8);
      words[s * io::kSlotWords + io::kWordStatus] = pick < 6 ? kStatuses[pick] : random();
    }
  }
  Harness(&in, *view, absl::MakeSpan(words)).Run();
}

}  // namespace
}  // namespace mk::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mk::fuzz::Input in(data, size);
  mk::engine::Fuzz(in);
  return 0;
}
