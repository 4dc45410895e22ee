#include "mk/engine/io_queue.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mk::engine {
namespace {

using protocol::io::IoStatus;
using ::testing::HasSubstr;

class IoQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    words_.assign(size_t{64} * protocol::io::kSlotWords, 0);
    queue_ = *IoQueueView::Create(absl::MakeSpan(words_));
  }
  IoRequest Request(uint32_t tag) {
    return IoRequest{protocol::io::OpType::kRead, 9, 3, (uint64_t{1} << 33) + tag, 65536, tag};
  }
  std::vector<uint32_t> words_;
  IoQueueView queue_;
};

TEST_F(IoQueueTest, PublishClaimCompleteRecycle) {
  auto index = queue_.Publish(Request(5));
  ASSERT_TRUE(index.ok());
  std::vector<uint32_t> published;
  queue_.Poll(&published);
  EXPECT_THAT(published, ::testing::ElementsAre(*index));
  auto request = queue_.Claim(*index);
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(*request, Request(5)) << "64-bit offsets survive the lo/hi split";
  ASSERT_TRUE(queue_.Complete({*index, true, 0}).ok());
  EXPECT_EQ(*queue_.LoadStatus(*index), IoStatus::kOk);
  ASSERT_TRUE(queue_.Recycle(*index).ok());
  EXPECT_EQ(*queue_.LoadStatus(*index), IoStatus::kEmpty);
}

TEST_F(IoQueueTest, ClaimIsExactlyOnceUnderContention) {
  for (uint32_t i = 0; i < 64; ++i) ASSERT_TRUE(queue_.Publish(Request(i), i).ok());
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (uint32_t i = 0; i < 64; ++i) wins += queue_.Claim(i).ok();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 64);
}

TEST_F(IoQueueTest, CompletionWithoutClaimRejected) {
  auto index = *queue_.Publish(Request(1));
  absl::Status s = queue_.Complete({index, true, 0});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("PUBLISHED"));
  EXPECT_EQ(queue_.Recycle(index).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(IoQueueTest, BatchWithOneUnclaimedSlotChangesNothing) {
  std::vector<IoCompletion> batch;
  for (uint32_t i = 0; i < 4; ++i) {
    uint32_t index = *queue_.Publish(Request(i));
    if (i != 2) ASSERT_TRUE(queue_.Claim(index).ok());
    batch.push_back({index, i % 2 == 0, i % 2 == 0 ? 0u : 5u});
  }
  const std::vector<uint32_t> before = words_;
  EXPECT_EQ(queue_.CompleteBatch(batch).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(words_, before) << "validation happens before any mutation";
  ASSERT_TRUE(queue_.Claim(batch[2].index).ok());
  ASSERT_TRUE(queue_.CompleteBatch(batch).ok());
  EXPECT_EQ(*queue_.LoadStatus(batch[1].index), IoStatus::kError);
  EXPECT_EQ(words_[batch[1].index * 8 + protocol::io::kWordByteCount], 5u)
      << "errno lands in BYTE_COUNT";
}

TEST_F(IoQueueTest, DuplicateAndErrnolessCompletionsRejected) {
  uint32_t index = *queue_.Publish(Request(1));
  ASSERT_TRUE(queue_.Claim(index).ok());
  IoCompletion twice[] = {{index, true, 0}, {index, true, 0}};
  EXPECT_EQ(queue_.CompleteBatch(twice).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(queue_.Complete({index, false, 0}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*queue_.LoadStatus(index), IoStatus::kClaimed);
}

TEST_F(IoQueueTest, SixtyFifthPublishErrorsInsteadOfDropping) {
  for (uint32_t i = 0; i < 64; ++i) ASSERT_TRUE(queue_.Publish(Request(i)).ok()) << i;
  auto full = queue_.Publish(Request(64));
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("requeue"));
}

TEST_F(IoQueueTest, PollReusesCapacityAndIgnoresReservedSlots) {
  std::vector<uint32_t> published;
  published.reserve(64);
  const uint32_t* storage = published.data();
  ASSERT_TRUE(queue_.Publish(Request(0)).ok());
  words_[10 * 8 + protocol::io::kWordStatus] = static_cast<uint32_t>(IoStatus::kReserved);
  queue_.Poll(&published);
  EXPECT_EQ(published.size(), 1u);
  EXPECT_EQ(published.data(), storage);
}

TEST(IoQueueCreateTest, RejectsBadBuffers) {
  std::vector<uint32_t> words(64 * 8 + 3);
  EXPECT_EQ(IoQueueView::Create(absl::MakeSpan(words)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(IoQueueView::Create(absl::MakeSpan(words.data(), size_t{63} * 8)).status().code(),
            absl::StatusCode::kInvalidArgument);
  IoQueueView q = *IoQueueView::Create(absl::MakeSpan(words.data(), size_t{64} * 8));
  EXPECT_EQ(q.Claim(64).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(q.Claim(UINT32_MAX).status().code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace mk::engine
