#include "mk/engine/debug_log.h"

#include <algorithm>
#include <atomic>

#include "mk/engine/interpreter.h"
#include "mk/engine/protocol.h"

namespace mk::engine {

namespace dl = protocol::debug_log;

absl::Status DecodeDebugLog(absl::Span<const uint32_t> buffer, DebugLogContents* out) {
  out->records.clear();
  out->overflow = 0;
  if (buffer.empty()) {
    return absl::InvalidArgumentError(
        "debug log: empty buffer; the log needs at least its cursor word");
  }
  const uint32_t capacity_words =
      static_cast<uint32_t>((buffer.size() - dl::kFirstRecordWord) / dl::kRecordWords) *
      dl::kRecordWords;
  const uint32_t cursor = std::atomic_ref<uint32_t>(const_cast<uint32_t&>(buffer[dl::kCursorWord]))
                              .load(std::memory_order_acquire);
  const uint32_t written = std::min(cursor, capacity_words);
  out->overflow = (cursor - written) / dl::kRecordWords;
  for (uint32_t w = 0; w + dl::kRecordWords <= written; w += dl::kRecordWords) {
    const uint32_t* r = &buffer[dl::kFirstRecordWord + w];
    out->records.push_back(DebugRecord{r[0], r[1], r[2], r[3]});
  }
  return absl::OkStatus();
}

bool AppendDebugRecord(absl::Span<uint32_t> buffer, const DebugRecord& record) {
  if (buffer.empty()) return false;
  const auto capacity_records =
      static_cast<uint32_t>((buffer.size() - dl::kFirstRecordWord) / dl::kRecordWords);
  return protocol::AppendLogRecord(buffer.data(), capacity_records, record.fmt_id, record.arg1,
                                   record.arg2, record.slot_index);
}

}  // namespace mk::engine
