// The one ring: partitions and their cursors (reserve, commit in order, claim, tail), the one
// outcome writer, and the reference design's producer and consumer ports on the same memory.
#include "host/partitioned_ring.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/proto/packed_codec.h"

namespace mk::engine::host {
namespace {

using protocol::SlotStatus;
using ::testing::HasSubstr;

constexpr std::array<uint32_t, protocol::kPriorityCount> kWeights = {1, 2, 8, 3, 2};
constexpr uint32_t kNormal = static_cast<uint32_t>(protocol::Priority::kNormal);

std::unique_ptr<PartitionedRing> MakeRing(uint32_t slots) {
  auto ring = PartitionedRing::Create(slots, kWeights);
  EXPECT_TRUE(ring.ok()) << ring.status();
  return ring.ok() ? *std::move(ring) : nullptr;
}

PriorityCounts Normal(uint32_t n) {
  PriorityCounts c{};
  c[kNormal] = n;
  return c;
}

std::string SlotImage(uint32_t opcode, uint32_t tenant, uint32_t first_arg) {
  proto::PackedWords w{};
  w[protocol::kWordStatus] = 7;  // ignored by Publish
  w[protocol::kWordOpcode] = opcode;
  w[protocol::kWordTenant] = tenant;
  w[protocol::kWordPriority] = 2;
  for (uint32_t i = 0; i < protocol::kArgWords; ++i) w[protocol::kWordArg0 + i] = first_arg + i;
  std::string image(protocol::kSlotBytes, '\0');
  proto::StorePackedWords(w, image.data());
  return image;
}

TEST(PartitionedRingTest, CreateValidatesAndSplitsByWeight) {
  EXPECT_EQ(PartitionedRing::Create(9, kWeights).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionedRing::Create(PartitionedRing::kMaxSlots + 1, kWeights).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionedRing::Create(64, {1, 1, 0, 1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto ring = MakeRing(1600);
  ASSERT_NE(ring, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ring->slot(0)) % 4096, 0u) << "whole pages";
  uint32_t total = 0;
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    EXPECT_EQ(ring->partition_first(p), total);
    total += ring->partition_size(p);
    EXPECT_EQ(ring->PartitionOf(ring->partition_first(p)), p);
  }
  EXPECT_EQ(total, 1600u);
  EXPECT_EQ(ring->partition_size(kNormal), 800u);  // 8 of 16 weights
}

TEST(PartitionedRingTest, ReserveCommitClaimInOrderThenTheTailFreesRoom) {
  auto ring = MakeRing(160);  // NORMAL holds 80
  ASSERT_NE(ring, nullptr);
  const uint32_t size = ring->partition_size(kNormal);
  auto full = ring->Reserve(Normal(size + 1));
  EXPECT_EQ(full.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(full.status().message(), HasSubstr("exceed the NORMAL partition"));

  auto first = ring->Reserve(Normal(size - 10));
  ASSERT_TRUE(first.ok());
  first->Unlock();
  auto more = ring->Reserve(Normal(11));
  EXPECT_EQ(more.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(more.status().message(), HasSubstr("retry"));
  EXPECT_FALSE(ring->HasClaimable(kNormal)) << "nothing is claimable before Commit";
  ring->Commit(*first);
  ClaimRange range;
  ASSERT_TRUE(ring->ClaimBatch(kNormal, 1024, &range));
  EXPECT_EQ(range.begin, 0u);
  EXPECT_EQ(range.end, size - 10);
  // Slots that went back to EMPTY let the tail pass them.
  ring->ForEachIndex(range, [&](uint32_t index) {
    ring->status(index).store(static_cast<uint32_t>(SlotStatus::kEmpty));
  });
  ring->AdvanceTail(kNormal);
  EXPECT_TRUE(ring->Reserve(Normal(11)).ok());
}

TEST(PartitionedRingTest, CommitsBecomeVisibleInReservationOrder) {
  auto ring = MakeRing(160);
  ASSERT_NE(ring, nullptr);
  auto a = ring->Reserve(Normal(3));
  ASSERT_TRUE(a.ok());
  a->Unlock();
  auto b = ring->Reserve(Normal(4));
  ASSERT_TRUE(b.ok());
  b->Unlock();
  std::atomic<bool> b_committed{false};
  std::thread later([&] {
    ring->Commit(*b);  // waits for `a`
    b_committed = true;
  });
  for (int i = 0; i < 1000; ++i) std::this_thread::yield();
  EXPECT_FALSE(b_committed.load()) << "a later reservation waits for the earlier one";
  EXPECT_FALSE(ring->HasClaimable(kNormal));
  ring->Commit(*a);
  later.join();
  ClaimRange range;
  ASSERT_TRUE(ring->ClaimBatch(kNormal, 1024, &range));
  EXPECT_EQ(range.end - range.begin, 7u) << "both publishes, whole";
}

TEST(PartitionedRingTest, WriteOutcomeWritesResultsZeroesTheRestThenStatus) {
  auto ring = MakeRing(16);
  ASSERT_NE(ring, nullptr);
  ASSERT_TRUE(ring->Publish(3, SlotImage(2, 1, 100)).ok());
  ASSERT_TRUE(ring->MoveStatus(3, SlotStatus::kPublished, SlotStatus::kClaimed, Actor::kEngine));
  protocol::ExecResult r = protocol::Done(2);
  r.results[0] = 7;
  r.results[1] = 8;
  ring->WriteOutcome(3, r, Actor::kEngine);
  const uint32_t* w = ring->slot(3);
  EXPECT_EQ(w[protocol::kWordStatus], static_cast<uint32_t>(SlotStatus::kDone));
  EXPECT_EQ(w[protocol::kWordArg0], 7u);
  EXPECT_EQ(w[protocol::kWordArg0 + 1], 8u);
  EXPECT_EQ(w[protocol::kWordArg0 + 2], 0u) << "words past the results are zeroed";
  EXPECT_EQ(w[protocol::kWordOpcode], 2u) << "the payload header stays";
  EXPECT_FALSE(ring->MoveStatus(3, SlotStatus::kPublished, SlotStatus::kClaimed, Actor::kEngine))
      << "a compare-and-swap: the slot is no longer PUBLISHED";
}

TEST(PartitionedRingTest, ProducerAndConsumerPortsRoundTripThroughTheRing) {
  auto ring = MakeRing(16);
  ASSERT_NE(ring, nullptr);
  RingProducer& producer = *ring;
  const RingConsumer& consumer = *ring;
  EXPECT_EQ(producer.slot_count(), 16u);
  EXPECT_EQ(consumer.slot_count(), 16u);
  EXPECT_FALSE(producer.name().empty());
  const std::string image = SlotImage(3, 5, 40);
  ASSERT_TRUE(producer.Publish(9, image).ok());
  std::string back(protocol::kSlotBytes, '\0');
  ASSERT_TRUE(consumer.ReadSlot(9, absl::MakeSpan(back)).ok());
  const proto::PackedWords words = proto::LoadPackedWords(back.data());
  EXPECT_EQ(words[protocol::kWordStatus], static_cast<uint32_t>(SlotStatus::kPublished));
  EXPECT_EQ(words[protocol::kWordTenant], 5u);
  EXPECT_EQ(words[protocol::kWordArg0 + 11], 51u);
  EXPECT_EQ(*consumer.DoneCount(), 0u);
  ASSERT_TRUE(ring->MoveStatus(9, SlotStatus::kPublished, SlotStatus::kClaimed, Actor::kEngine));
  ring->WriteOutcome(9, protocol::Done(), Actor::kEngine);
  EXPECT_EQ(*consumer.DoneCount(), 1u);
}

TEST(PartitionedRingTest, PortsRejectBadInputWithoutTouchingTheRing) {
  auto ring = MakeRing(16);
  ASSERT_NE(ring, nullptr);
  const std::string image = SlotImage(1, 0, 0);
  std::string buffer(protocol::kSlotBytes, '\0');
  auto publish_code = [&](uint32_t index, absl::Span<const char> bytes) {
    return ring->Publish(index, bytes).code();
  };
  EXPECT_EQ(publish_code(0, absl::MakeConstSpan(image.data(), 63)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(publish_code(0, absl::MakeConstSpan(image.data(), 0)),
            absl::StatusCode::kInvalidArgument);
  for (uint32_t bad : {16u, UINT32_MAX}) {
    EXPECT_EQ(publish_code(bad, image), absl::StatusCode::kOutOfRange) << bad;
    EXPECT_EQ(ring->ReadSlot(bad, absl::MakeSpan(buffer)).code(), absl::StatusCode::kOutOfRange);
  }
  EXPECT_EQ(ring->ReadSlot(0, absl::MakeSpan(buffer.data(), 65)).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(ring->Publish(4, SlotImage(2, 1, 10)).ok());
  const absl::Status again = ring->Publish(4, image);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.message(), HasSubstr("slot 4 which is PUBLISHED"));
  EXPECT_EQ(ring->slot(4)[protocol::kWordOpcode], 2u) << "a rejected publish leaves the slot";
  // Inconsistent ring bytes: a STATUS word that is no status.
  ring->status(6).store(9);
  const auto done = ring->DoneCount();
  EXPECT_EQ(done.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(done.status().message(), HasSubstr("slot 6"));
}

TEST(PartitionedRingTest, ConcurrentPortProducersExecutorAndConsumersLoseNothing) {
  constexpr uint32_t kSlots = 256;
  constexpr uint32_t kProducers = 4;
  auto ring = MakeRing(kSlots);
  ASSERT_NE(ring, nullptr);
  std::vector<std::thread> threads;
  for (uint32_t p = 0; p < kProducers; ++p) {  // producer p owns slots p, p + 4, ...
    threads.emplace_back([&, p] {
      for (uint32_t i = p; i < kSlots; i += kProducers) {
        ASSERT_TRUE(ring->Publish(i, SlotImage(protocol::opcode::kNop, p, i)).ok());
      }
    });
  }
  std::atomic<bool> executed_all{false};
  threads.emplace_back([&] {  // an executor that scans statuses, as vyre's does
    uint32_t done = 0;
    while (done < kSlots) {
      for (uint32_t i = 0; i < kSlots; ++i) {
        if (!ring->MoveStatus(i, SlotStatus::kPublished, SlotStatus::kClaimed, Actor::kEngine)) {
          continue;
        }
        protocol::ExecResult r = protocol::Done(1);
        r.results[0] = ring->slot(i)[protocol::kWordArg0] * 2;
        ring->WriteOutcome(i, r, Actor::kEngine);
        ++done;
      }
    }
    executed_all = true;
  });
  std::atomic<uint64_t> last_count{0};
  threads.emplace_back([&] {  // a consumer watching progress, reading finished slots
    std::string image(protocol::kSlotBytes, '\0');
    uint32_t probe = 0;
    while (!executed_all.load()) {
      auto n = ring->DoneCount();
      ASSERT_TRUE(n.ok()) << n.status();
      ASSERT_GE(*n, last_count.load()) << "DONE slots only accumulate here";
      last_count = *n;
      // ReadSlot is consistent for slots at rest: read only DONE ones (nothing here reaps).
      probe = (probe + 1) % kSlots;
      if (ring->status(probe).load(std::memory_order_acquire) !=
          static_cast<uint32_t>(SlotStatus::kDone)) {
        continue;
      }
      ASSERT_TRUE(ring->ReadSlot(probe, absl::MakeSpan(image)).ok());
      ASSERT_EQ(proto::LoadPackedWords(image.data())[protocol::kWordArg0], 2 * probe)
          << "slot " << probe;
    }
  });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(*ring->DoneCount(), kSlots);
  std::string image(protocol::kSlotBytes, '\0');
  for (uint32_t i = 0; i < kSlots; ++i) {
    ASSERT_TRUE(ring->ReadSlot(i, absl::MakeSpan(image)).ok());
    EXPECT_EQ(proto::LoadPackedWords(image.data())[protocol::kWordArg0], 2 * i) << "slot " << i;
  }
}

TEST(PartitionedRingTest, ProducersRacingForOneSlotPublishItOnce) {
  auto ring = MakeRing(16);
  ASSERT_NE(ring, nullptr);
  for (uint32_t round = 0; round < 200; ++round) {
    const uint32_t index = round % 16;
    if (round >= 16) {  // the slot's last round left it PUBLISHED: return it to EMPTY
      ASSERT_TRUE(
          ring->MoveStatus(index, SlotStatus::kPublished, SlotStatus::kEmpty, Actor::kHost));
    }
    std::atomic<uint32_t> won{0};
    std::atomic<uint32_t> refused{0};
    std::vector<std::thread> producers;
    for (uint32_t p = 0; p < 2; ++p) {
      producers.emplace_back([&, p] {
        const absl::Status s = ring->Publish(index, SlotImage(protocol::opcode::kNop, p, p));
        if (s.ok()) {
          won.fetch_add(1);
        } else if (s.code() == absl::StatusCode::kFailedPrecondition) {
          refused.fetch_add(1);
        }
      });
    }
    for (std::thread& t : producers) t.join();
    ASSERT_EQ(won.load(), 1u) << "round " << round;
    ASSERT_EQ(refused.load(), 1u) << "round " << round;
    std::string image(protocol::kSlotBytes, '\0');
    ASSERT_TRUE(ring->ReadSlot(index, absl::MakeSpan(image)).ok());
    const proto::PackedWords words = proto::LoadPackedWords(image.data());
    EXPECT_EQ(words[protocol::kWordTenant], words[protocol::kWordArg0])
        << "one producer's image, whole";
  }
}

}  // namespace
}  // namespace mk::engine::host
