// Decoder for the debug log written by PRINTF (docs/protocol.md, "Debug log").
//
// Never fails because the log filled up: records past capacity are counted as overflow.
// Decoding writes into caller-owned storage whose capacity is reused across polls.
#ifndef MK_ENGINE_DEBUG_LOG_H_
#define MK_ENGINE_DEBUG_LOG_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace mk::engine {

struct DebugRecord {
  uint32_t fmt_id = 0;
  uint32_t arg1 = 0;
  uint32_t arg2 = 0;
  uint32_t slot_index = 0;
  friend bool operator==(const DebugRecord&, const DebugRecord&) = default;
};

struct DebugLogContents {
  std::vector<DebugRecord> records;  // cleared and refilled; capacity kept
  uint64_t overflow = 0;             // PRINTFs dropped because the log was full
};

// `buffer` is the whole log (cursor word + records). INVALID_ARGUMENT only when the buffer
// cannot hold even the cursor word; a full or over-full log decodes fine.
absl::Status DecodeDebugLog(absl::Span<const uint32_t> buffer, DebugLogContents* out);

// Appends one record the way an engine does (reserve 4 words with an atomic add on the cursor,
// write if it fits). Returns false when the record was dropped as overflow.
bool AppendDebugRecord(absl::Span<uint32_t> buffer, const DebugRecord& record);

}  // namespace mk::engine

#endif  // MK_ENGINE_DEBUG_LOG_H_
