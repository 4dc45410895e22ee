// libFuzzer target: the debug-log decoder and writer (mk/engine/debug_log.h, docs/protocol.md
// "Debug log").
//
// Input: a snapshot (one byte: its length in words, then its words: the cursor, then records),
// then an append run (capacity in records, 0..3 trailing words, a starting cursor, a count and
// that many records).
// Properties:
// - any snapshot decodes (INVALID_ARGUMENT only for an empty buffer, with the output cleared):
//   the records are exactly the words below min(cursor, capacity) in order, and overflow is the
//   reservations past capacity;
// - appends from any aligned cursor (the wrap at 2^32 included) write exactly the records that
//   fit, report the others as dropped, never touch a word outside the buffer, and decode back
//   to what a model of the protocol holds.
#include <cstdint>
#include <vector>

#include "fuzz/libfuzzer/fuzz_support.h"
#include "mk/engine/debug_log.h"
#include "mk/engine/protocol.h"

namespace mk::engine {
namespace {

namespace dl = protocol::debug_log;

void CheckDecodedSnapshot(fuzz::Input& in) {
  const size_t size = in.U8();
  std::vector<uint32_t> buffer = in.Words(size);
  buffer.resize(size);
  DebugLogContents out;
  out.records.assign(3, DebugRecord{1, 2, 3, 4});  // stale contents must not survive
  out.overflow = 99;
  const absl::Status s = DecodeDebugLog(buffer, &out);
  if (size == 0) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(s), s.ToString());
    MK_FUZZ_CHECK(out.records.empty() && out.overflow == 0, "stale output after an error");
    return;
  }
  MK_FUZZ_CHECK(s.ok(), s.ToString());
  const uint64_t capacity_words = (size - 1) / dl::kRecordWords * dl::kRecordWords;
  const uint64_t cursor = buffer[dl::kCursorWord];
  const uint64_t written = std::min(cursor, capacity_words);
  MK_FUZZ_CHECK(out.records.size() == written / dl::kRecordWords, out.records.size(),
                " records for cursor ", cursor, " and capacity ", capacity_words, " words");
  MK_FUZZ_CHECK(out.overflow == (cursor - written) / dl::kRecordWords, out.overflow);
  for (size_t i = 0; i < out.records.size(); ++i) {
    const uint32_t* r = &buffer[dl::kFirstRecordWord + i * dl::kRecordWords];
    MK_FUZZ_CHECK((out.records[i] == DebugRecord{r[0], r[1], r[2], r[3]}), "record ", i);
  }
}

void CheckAppends(fuzz::Input& in) {
  const uint32_t capacity = in.Below(80);
  const uint32_t trailing = in.Below(dl::kRecordWords);  // words too few for another record
  const uint32_t start = in.U32() & ~(dl::kRecordWords - 1);
  const uint32_t count = in.U8();
  // A guard word on each side: the writer must stay inside its span.
  constexpr uint32_t kGuard = 0xA5A5A5A5u;
  std::vector<uint32_t> storage(dl::BufferWords(capacity) + trailing + 2, kGuard);
  const absl::Span<uint32_t> buffer = absl::MakeSpan(storage).subspan(1, storage.size() - 2);
  std::fill(buffer.begin(), buffer.end(), 0);
  buffer[dl::kCursorWord] = start;

  std::vector<uint32_t> model(buffer.begin(), buffer.end());
  const uint32_t capacity_words = capacity * dl::kRecordWords;
  uint32_t cursor = start;
  for (uint32_t i = 0; i < count; ++i) {
    const DebugRecord r{in.U32(), in.U32(), in.U32(), in.U32()};
    const uint32_t at = cursor;
    cursor += dl::kRecordWords;  // wraps at 2^32 like the engine's atomic add
    const bool fits = at < capacity_words;
    if (fits) {
      uint32_t* w = &model[dl::kFirstRecordWord + at];
      w[0] = r.fmt_id;
      w[1] = r.arg1;
      w[2] = r.arg2;
      w[3] = r.slot_index;
    }
    MK_FUZZ_CHECK(AppendDebugRecord(buffer, r) == fits, "append ", i, " at word ", at);
  }
  model[dl::kCursorWord] = cursor;
  MK_FUZZ_CHECK(storage.front() == kGuard && storage.back() == kGuard, "write outside the log");
  MK_FUZZ_CHECK(std::equal(model.begin(), model.end(), buffer.begin()),
                "the log differs from the model");

  DebugLogContents out;
  const absl::Status s = DecodeDebugLog(buffer, &out);
  MK_FUZZ_CHECK(s.ok(), s.ToString());
  const uint32_t written = std::min(cursor, capacity_words);
  MK_FUZZ_CHECK(out.records.size() == written / dl::kRecordWords, out.records.size());
  MK_FUZZ_CHECK(out.overflow == (cursor - written) / dl::kRecordWords, out.overflow);
  MK_FUZZ_CHECK(!AppendDebugRecord({}, DebugRecord{}), "an empty log took a record");
}

}  // namespace
}  // namespace mk::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mk::fuzz::Input in(data, size);
  mk::engine::CheckDecodedSnapshot(in);
  mk::engine::CheckAppends(in);
  return 0;
}
