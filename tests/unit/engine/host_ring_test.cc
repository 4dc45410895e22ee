#include "mk/engine/host_ring.h"

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace mk::engine {
namespace {

using protocol::SlotStatus;

TEST(HostRingTest, CreateRejectsBadSizes) {
  EXPECT_EQ(HostRing::Create(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HostRing::Create((1u << 26) + 1).status().code(), absl::StatusCode::kInvalidArgument);
  auto ring = HostRing::Create(16);
  ASSERT_TRUE(ring.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*ring)->view().words().data()) % 64, 0u);
}

TEST(HostRingTest, FullRingReportsExhaustedAndRecovers) {
  auto ring = *HostRing::Create(4);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ring->Publish({}).ok());
  EXPECT_EQ(ring->Publish({}).status().code(), absl::StatusCode::kResourceExhausted);
  auto claimed = ring->ClaimNext();
  ASSERT_TRUE(claimed.has_value());
  EXPECT_EQ(ring->Reap(*claimed).status().code(), absl::StatusCode::kFailedPrecondition);
  const uint32_t result[] = {42};
  ASSERT_TRUE(ring->Complete(*claimed, SlotStatus::kDone, result).ok());
  auto reaped = ring->Reap(*claimed);
  ASSERT_TRUE(reaped.ok());
  EXPECT_EQ(reaped->payload.args[0], 42u);
  EXPECT_EQ(reaped->status, SlotStatus::kDone);
  EXPECT_TRUE(ring->Publish({}).ok()) << "a reaped slot is free again";
}

// Many producers and consumers: every published payload is claimed, completed and reaped
// exactly once.
TEST(HostRingTest, ConcurrentProducersAndConsumersLoseNothing) {
  auto ring = *HostRing::Create(64);
  constexpr uint32_t kPerProducer = 20000;
  constexpr int kProducers = 3;
  std::atomic<bool> producers_done{false};
  std::mutex mu;
  std::multiset<uint32_t> seen;
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (uint32_t i = 0; i < kPerProducer;) {
        SlotPayload payload;
        payload.args[0] = p * kPerProducer + i;
        if (ring->Publish(payload).ok()) ++i;
      }
    });
  }
  std::atomic<uint32_t> reaped{0};
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&] {
      while (reaped.load() < kProducers * kPerProducer) {
        auto index = ring->ClaimNext();
        if (!index) continue;
        auto payload = *ring->view().Read(*index);
        const uint32_t echo[] = {payload.args[0]};
        ASSERT_TRUE(ring->Complete(*index, SlotStatus::kDone, echo).ok());
        auto r = ring->Reap(*index);
        ASSERT_TRUE(r.ok()) << r.status();
        {
          std::lock_guard<std::mutex> lock(mu);
          seen.insert(r->payload.args[0]);
        }
        reaped.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(seen.size(), size_t{kProducers} * kPerProducer);
  uint32_t expect = 0;
  for (uint32_t v : seen) ASSERT_EQ(v, expect++) << "duplicate or lost payload";
}

}  // namespace
}  // namespace mk::engine
