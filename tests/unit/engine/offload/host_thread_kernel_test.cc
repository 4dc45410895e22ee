// The host-thread kernel over real submission queues: what the dispatcher writes runs exactly
// once across blocks sharing a shard, each outcome comes back as a tagged completion record,
// pausing holds entries, stopping and relaunching work, and LOAD_MISS asks the host as a GPU
// block does for a resource it does not hold.
#include "offload/host_thread_kernel.h"

#include <set>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mk/engine/protocol.h"
#include "support/engine_test_util.h"

namespace mk::engine::offload {
namespace {

namespace op = protocol::opcode;
using protocol::SlotStatus;

constexpr protocol::control::Layout kLayout{4, 16};

class HostThreadKernelTest : public ::testing::Test {
 protected:
  void Make(uint32_t blocks, uint32_t shards) {
    HostKernelConfig config;
    config.shape = {shards, 1024, blocks};
    config.claim_limit = 16;
    config.max_backoff = absl::Microseconds(20);
    log_.assign(protocol::debug_log::BufferWords(64), 0);
    auto kernel = HostThreadKernel::Create(config, kLayout, absl::MakeSpan(log_), 64, {});
    ASSERT_TRUE(kernel.ok()) << kernel.status();
    kernel_ = *std::move(kernel);
  }
  // Writes one entry per slot into `shard` from `position` on and rings its doorbell.
  void Dispatch(uint32_t shard, uint64_t position,
                const std::vector<std::vector<uint32_t>>& slots) {
    for (size_t i = 0; i < slots.size(); ++i) {
      uint32_t words[protocol::kSlotWords] = {};
      for (size_t w = 0; w < slots[i].size(); ++w) words[1 + w] = slots[i][w];
      const uint32_t last = i + 1 == slots.size() ? kEntryLastOfDispatch : 0;
      kernel_->queues().WriteEntry(shard, position + i, static_cast<uint32_t>(i) | last, words,
                                   /*streaming=*/i % 2 == 1);
    }
    kernel_->queues().PublishTail(shard, position + slots.size(), /*streamed=*/true);
  }
  // The record of `position`, once whole (false at the deadline). The status word comes
  // first and each result word after it, as a GPU's may: wait for every word's tag, as the
  // reaper does.
  bool AwaitRecord(uint32_t shard, uint64_t position, protocol::ExecResult* out) {
    const uint32_t tag = PositionTag(position);
    uint64_t head = 0;
    if (!testing::WaitUntil([&] { return Tag(head = RecordWord(shard, position, 0)) == tag; })) {
      return false;
    }
    out->status = static_cast<SlotStatus>(head & 0xff);
    out->result_count = (head >> 8) & 0xff;
    for (uint32_t i = 0; i < out->result_count; ++i) {
      uint64_t word = 0;
      EXPECT_TRUE(testing::WaitUntil([&] {
        return Tag(word = RecordWord(shard, position, 1 + i)) == tag;
      })) << "result word "
          << i << " never carried the record's tag";
      out->results[i] = static_cast<uint32_t>(word);
    }
    return true;
  }
  uint64_t RecordWord(uint32_t shard, uint64_t position, uint32_t word) {
    return std::atomic_ref<uint64_t>(
               *const_cast<uint64_t*>(kernel_->queues().completion(shard, position) + word))
        .load(std::memory_order_acquire);
  }
  uint64_t Record0(uint32_t shard, uint64_t position) { return RecordWord(shard, position, 0); }
  static uint32_t Tag(uint64_t word) { return static_cast<uint32_t>(word >> 32); }

  std::vector<uint32_t> log_;
  std::unique_ptr<HostThreadKernel> kernel_;
};

TEST_F(HostThreadKernelTest, EveryEntryRunsOnceAcrossBlocksSharingAShard) {
  Make(/*blocks=*/3, /*shards=*/1);
  const uint64_t first[kMaxShards] = {};
  ASSERT_TRUE(kernel_->Launch(first).ok());
  EXPECT_TRUE(kernel_->KernelState().ok());
  constexpr int kEntries = 300;
  // ATOMIC_ADD(1) on tenant 1's scratch word 0: each entry sees a distinct previous value
  // exactly when each ran exactly once.
  std::vector<std::vector<uint32_t>> slots(kEntries, {op::kAtomicAdd, 1, 2, 1, 0});
  Dispatch(0, 0, slots);
  std::set<uint32_t> previous;
  for (uint64_t p = 0; p < kEntries; ++p) {
    protocol::ExecResult r;
    ASSERT_TRUE(AwaitRecord(0, p, &r)) << "entry " << p;
    ASSERT_EQ(r.status, SlotStatus::kDone);
    ASSERT_EQ(r.result_count, 1u);
    previous.insert(r.results[0]);
  }
  EXPECT_EQ(previous.size(), static_cast<size_t>(kEntries));
  EXPECT_EQ(*previous.rbegin(), kEntries - 1u);
  kernel_->queues().RequestStop();
  ASSERT_TRUE(kernel_->WaitStopped(absl::Now() + absl::Seconds(30)).ok());
  EXPECT_EQ(kernel_->KernelState().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(HostThreadKernelTest, FaultsAndHostQuestionsComeBackAsRecords) {
  Make(2, 2);
  const uint64_t first[kMaxShards] = {};
  ASSERT_TRUE(kernel_->Launch(first).ok());
  Dispatch(1, 0,
           {{op::kLoadU32, 1, 2, 1000},         // outside the scratch window
            {op::kLoadMiss, 1, 2, 7, 0},        // not resident here: ask the host
            {op::kChecksum, 1, 2, 7, 0, 0, 0},  // no checksum hook: not found
            {op::kPrintf, 1, 2, 42, 1, 2}});    // a debug-log record
  protocol::ExecResult r;
  ASSERT_TRUE(AwaitRecord(1, 0, &r));
  EXPECT_EQ(r.status, SlotStatus::kFault);
  EXPECT_EQ(r.results[0], static_cast<uint32_t>(protocol::FaultCode::kOutOfBounds));
  ASSERT_TRUE(AwaitRecord(1, 1, &r));
  EXPECT_EQ(static_cast<uint32_t>(r.status), kAskHostStatus);
  ASSERT_TRUE(AwaitRecord(1, 2, &r));
  EXPECT_EQ(r.status, SlotStatus::kFault);
  EXPECT_EQ(r.results[0], static_cast<uint32_t>(protocol::FaultCode::kResourceNotFound));
  ASSERT_TRUE(AwaitRecord(1, 3, &r));
  EXPECT_EQ(r.status, SlotStatus::kDone);
  EXPECT_EQ(log_[protocol::debug_log::kFirstRecordWord], 42u) << "PRINTF reached the log";
}

TEST_F(HostThreadKernelTest, PausedKernelHoldsEntriesUntilUnpaused) {
  Make(2, 1);
  const uint64_t first[kMaxShards] = {};
  ASSERT_TRUE(kernel_->Launch(first).ok());
  kernel_->queues().SetPaused(true);
  Dispatch(0, 0, {{op::kNop, 1, 2}, {op::kNop, 1, 2}});
  // Both blocks poll the paused doorbell until they count as idle; nothing ran meanwhile.
  ASSERT_TRUE(testing::WaitUntil([&] { return kernel_->queues().IdleBlocks() == 2; }));
  EXPECT_EQ(Record0(0, 0), 0u) << "a paused kernel claims nothing";
  kernel_->queues().SetPaused(false);
  protocol::ExecResult r;
  EXPECT_TRUE(AwaitRecord(0, 0, &r));
  EXPECT_TRUE(AwaitRecord(0, 1, &r));
}

TEST_F(HostThreadKernelTest, StopWaitsForTheBlocksAndARelaunchContinuesFromNewPositions) {
  Make(2, 2);
  const uint64_t first[kMaxShards] = {};
  ASSERT_TRUE(kernel_->Launch(first).ok());
  EXPECT_EQ(kernel_->WaitStopped(absl::Now() + absl::Milliseconds(1)).code(),
            absl::StatusCode::kDeadlineExceeded)
      << "not asked to stop: it runs on";
  EXPECT_EQ(kernel_->Launch(first).code(), absl::StatusCode::kFailedPrecondition);
  kernel_->queues().RequestStop();
  ASSERT_TRUE(kernel_->WaitStopped(absl::Now() + absl::Seconds(30)).ok());
  const uint64_t later[kMaxShards] = {10, 20};
  ASSERT_TRUE(kernel_->Launch(later).ok());
  Dispatch(0, 10, {{op::kNop, 1, 2}});
  Dispatch(1, 20, {{op::kNop, 1, 2}});
  protocol::ExecResult r;
  EXPECT_TRUE(AwaitRecord(0, 10, &r));
  EXPECT_TRUE(AwaitRecord(1, 20, &r));
}

}  // namespace
}  // namespace mk::engine::offload
