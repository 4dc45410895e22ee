#include "mk/engine/debug_log.h"

#include <vector>

#include "gtest/gtest.h"
#include "mk/engine/protocol.h"

namespace mk::engine {
namespace {

TEST(DebugLogTest, RecordsDecodeInOrder) {
  std::vector<uint32_t> log(protocol::debug_log::BufferWords(64));
  for (uint32_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(AppendDebugRecord(absl::MakeSpan(log), {i, i + 1, i + 2, i * 3}));
  }
  DebugLogContents out;
  ASSERT_TRUE(DecodeDebugLog(log, &out).ok());
  ASSERT_EQ(out.records.size(), 10u);
  EXPECT_EQ(out.records[4], (DebugRecord{4, 5, 6, 12}));
  EXPECT_EQ(out.overflow, 0u);
}

TEST(DebugLogTest, OverflowIsCountedNeverAnError) {
  std::vector<uint32_t> log(protocol::debug_log::BufferWords(64));
  int written = 0;
  for (uint32_t i = 0; i < 100; ++i) {
    written += AppendDebugRecord(absl::MakeSpan(log), {i, 0, 0, 0});
  }
  EXPECT_EQ(written, 64);
  DebugLogContents out;
  ASSERT_TRUE(DecodeDebugLog(log, &out).ok()) << "a full log still decodes (vyre fails here)";
  EXPECT_EQ(out.records.size(), 64u);
  EXPECT_EQ(out.records.back().fmt_id, 63u);
  EXPECT_EQ(out.overflow, 36u);
}

TEST(DebugLogTest, DecodeReusesCallerCapacity) {
  std::vector<uint32_t> log(protocol::debug_log::BufferWords(64));
  for (uint32_t i = 0; i < 64; ++i) AppendDebugRecord(absl::MakeSpan(log), {i, 0, 0, 0});
  DebugLogContents out;
  ASSERT_TRUE(DecodeDebugLog(log, &out).ok());
  const DebugRecord* storage = out.records.data();
  const size_t capacity = out.records.capacity();
  ASSERT_TRUE(DecodeDebugLog(log, &out).ok());
  EXPECT_EQ(out.records.data(), storage) << "a warm poll must not reallocate";
  EXPECT_EQ(out.records.capacity(), capacity);
}

TEST(DebugLogTest, EmptyBufferIsTheOnlyError) {
  DebugLogContents out;
  EXPECT_EQ(DecodeDebugLog({}, &out).code(), absl::StatusCode::kInvalidArgument);
  std::vector<uint32_t> cursor_only = {12};
  ASSERT_TRUE(DecodeDebugLog(cursor_only, &out).ok());
  EXPECT_TRUE(out.records.empty());
  EXPECT_EQ(out.overflow, 3u);
}

}  // namespace
}  // namespace mk::engine
