#include "mk/engine/control_buffer.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mk::engine {
namespace {

namespace ctl = protocol::control;
using ::testing::HasSubstr;

TEST(ControlBufferTest, CompatLayoutForFewTenants) {
  ctl::Layout layout{8, 4};
  std::vector<uint32_t> words(layout.TotalWords(), 0xDEAD);
  auto view = ControlView::Create(absl::MakeSpan(words), layout);
  ASSERT_TRUE(view.ok()) << view.status();
  view->Initialize();
  EXPECT_EQ(words[ctl::kTenantMaskBase], ctl::kCompatMaskFirst);
  for (uint32_t t = 0; t < 8; ++t) EXPECT_TRUE(*view->TenantEnabled(t));
  EXPECT_EQ(words[ctl::kDoneCount], 0u) << "Initialize zeroes counters";
  ASSERT_TRUE(view->SetTenantEnabled(5, false).ok());
  EXPECT_FALSE(*view->TenantEnabled(5));
  EXPECT_EQ(words[ctl::kCompatMaskFirst + 5], 0u);
}

TEST(ControlBufferTest, ExtendedMaskTableServes1024Tenants) {
  ctl::Layout layout{1024, 16};
  std::vector<uint32_t> words(layout.TotalWords());
  auto view = *ControlView::Create(absl::MakeSpan(words), layout);
  view.Initialize();
  EXPECT_EQ(words[ctl::kTenantMaskBase], 160u + 1024 * 16);
  ASSERT_TRUE(view.SetTenantEnabled(1023, false).ok());
  EXPECT_FALSE(*view.TenantEnabled(1023));
  EXPECT_TRUE(*view.TenantEnabled(1022));
  EXPECT_EQ(words[160 + 1024 * 16 + 1023], 0u);
  EXPECT_EQ(view.TenantEnabled(1024).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(view.TenantEnabled(UINT32_MAX).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(ControlBufferTest, CorruptMaskBaseIsAnErrorNotAWildRead) {
  ctl::Layout layout{4, 4};
  std::vector<uint32_t> words(layout.TotalWords());
  auto view = *ControlView::Create(absl::MakeSpan(words), layout);
  view.Initialize();
  words[ctl::kTenantMaskBase] = 0xFFFFFFF0u;
  EXPECT_THAT(view.TenantEnabled(3).status().message(), HasSubstr("points past the buffer"));
}

TEST(ControlBufferTest, ShortBufferAndBadLayoutRejected) {
  std::vector<uint32_t> words(100);
  EXPECT_EQ(ControlView::Create(absl::MakeSpan(words), {4, 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<uint32_t> enough(1000);
  EXPECT_EQ(ControlView::Create(absl::MakeSpan(enough), {0, 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ControlView::Create(absl::MakeSpan(enough), {4, 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ControlView::Create(absl::MakeSpan(enough), {1u << 20, 1u << 20}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ControlBufferTest, CountersAndMetrics) {
  ctl::Layout layout{4, 4};
  std::vector<uint32_t> words(layout.TotalWords());
  auto view = *ControlView::Create(absl::MakeSpan(words), layout);
  view.Initialize();
  words[ctl::kDoneCount] = 42;
  words[ctl::kEpoch] = 3;
  words[ctl::kOpcodeMetricsFirst + 7] = 9;
  words[ctl::kPriorityFairnessFirst + 4] = 11;
  words[ctl::kTenantFairnessFirst + 1] = 5;
  EXPECT_EQ(view.done_count(), 42u);
  EXPECT_EQ(view.epoch(), 3u);
  EXPECT_EQ(*view.OpcodeMetric(7), 9u);
  EXPECT_EQ(view.OpcodeMetric(32).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*view.PriorityFairness(4), 11u);
  EXPECT_EQ(view.PriorityFairness(5).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(view.TenantFairness(33), 5u) << "tenant fairness folds tenants modulo 32";
  EXPECT_FALSE(view.shutdown_requested());
  view.RequestShutdown();
  EXPECT_TRUE(view.shutdown_requested());
}

TEST(ControlBufferTest, TenantScratchWindowsAreDisjoint) {
  ctl::Layout layout{3, 8};
  std::vector<uint32_t> words(layout.TotalWords());
  auto view = *ControlView::Create(absl::MakeSpan(words), layout);
  auto a = *view.TenantScratch(0);
  auto b = *view.TenantScratch(1);
  EXPECT_EQ(a.data(), words.data() + 160);
  EXPECT_EQ(b.data(), a.data() + 8);
  EXPECT_EQ(a.size(), 8u);
  EXPECT_EQ(view.TenantScratch(3).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(ControlBufferTest, DoneCountFromMalformedSnapshotFails) {
  std::vector<uint32_t> snapshot(159, 7);
  auto done = ReadDoneCount(snapshot);
  EXPECT_EQ(done.status().code(), absl::StatusCode::kInvalidArgument)
      << "a truncated snapshot must not read as zero progress";
  EXPECT_EQ(ReadDoneCount({}).status().code(), absl::StatusCode::kInvalidArgument);
  snapshot.resize(160);
  EXPECT_EQ(*ReadDoneCount(snapshot), 7u);
}

TEST(ControlBufferTest, DoneDeltaWrapsSafely) {
  EXPECT_EQ(DoneDelta(10, 15), 5u);
  EXPECT_EQ(DoneDelta(UINT32_MAX - 2, 4), 7u);
  EXPECT_EQ(DoneDelta(UINT32_MAX, UINT32_MAX), 0u);
}

}  // namespace
}  // namespace mk::engine
