// Concurrency: many producers, several workers, random cancellations. Every accepted ticket
// reaches exactly one terminal outcome. Also runs under ThreadSanitizer (label concurrency).
#include <atomic>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mk/engine/engine.h"
#include "support/engine_test_util.h"

namespace mk::engine {
namespace {

using testing::Slot;
namespace op = protocol::opcode;

// Counts outcomes per (producer tenant, ticket); a ticket seen twice is a failure.
class OutcomeLedger final : public CompletionSink {
 public:
  OutcomeLedger(uint32_t tenants, uint64_t per_tenant)
      : seen_(tenants, std::vector<uint8_t>(per_tenant + 1, 0)) {}
  void OnCompletions(absl::Span<const Completion> batch) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Completion& c : batch) {
      uint8_t& slot = seen_[c.tenant][c.ticket];
      if (slot != 0) ++duplicates_;
      slot = static_cast<uint8_t>(c.status);
      ++total_;
      if (c.status == CompletionStatus::kCancelled) ++cancelled_;
      if (c.status == CompletionStatus::kFault) ++faulted_;
    }
  }
  uint64_t total() {
    std::lock_guard<std::mutex> l(mu_);
    return total_;
  }
  uint64_t duplicates() {
    std::lock_guard<std::mutex> l(mu_);
    return duplicates_;
  }
  uint64_t cancelled() {
    std::lock_guard<std::mutex> l(mu_);
    return cancelled_;
  }
  uint64_t faulted() {
    std::lock_guard<std::mutex> l(mu_);
    return faulted_;
  }
  uint64_t missing(uint32_t tenant, uint64_t issued) {
    std::lock_guard<std::mutex> l(mu_);
    uint64_t n = 0;
    for (uint64_t t = 1; t <= issued; ++t) n += seen_[tenant][t] == 0;
    return n;
  }

 private:
  std::mutex mu_;  // guards everything below
  std::vector<std::vector<uint8_t>> seen_;
  uint64_t total_ = 0;
  uint64_t duplicates_ = 0;
  uint64_t cancelled_ = 0;
  uint64_t faulted_ = 0;
};

#if defined(__SANITIZE_THREAD__)
constexpr uint64_t kSlotsPerProducer = 50'000;  // TSan runs ~10x slower
#else
constexpr uint64_t kSlotsPerProducer = 250'000;  // 4 producers: 1 M slots
#endif

TEST(EngineConcurrencyTest, NoTicketLostOrDuplicatedWithRandomCancellation) {
  MK_REQUIRE_BACKEND(testing::BackendUnderTest());
  EngineOptions o = testing::SuiteOptions();
  o.ring_slots = 1 << 14;
  o.workers = 3;
  o.max_tenants = 8;
  auto engine = *CreateEngine(o);
  ASSERT_TRUE(engine->Start().ok());
  constexpr uint32_t kProducers = 4;
  OutcomeLedger ledger(kProducers, kSlotsPerProducer);
  std::atomic<uint64_t> cancel_requests{0};
  std::atomic<uint64_t> cancelled_by_api{0};
  std::atomic<bool> invalid_status_seen{false};
  std::atomic<bool> producing{true};

  std::vector<std::thread> threads;
  for (uint32_t p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      std::mt19937 rng(p + 1);
      uint64_t published = 0;
      std::vector<SlotPayload> batch;
      while (published < kSlotsPerProducer) {
        const uint64_t n = std::min<uint64_t>(1 + rng() % 64, kSlotsPerProducer - published);
        batch.clear();
        for (uint64_t i = 0; i < n; ++i) {
          batch.push_back(Slot(i % 7 == 3 ? op::kAtomicAdd : op::kNop, {1, 0}, rng() % 5));
        }
        if (rng() % 50 == 0 && n > 2) batch.back() = Slot(op::kBatchFence, {2, 9}, rng() % 5);
        auto r = engine->Publish(p, batch, {&ledger});
        if (!r.ok()) {
          ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
          std::this_thread::yield();
          continue;
        }
        published += n;
        if (rng() % 10 == 0) {  // cancel a random ticket of this batch, racing the workers
          const uint64_t t = r->first_ticket + rng() % n;
          cancel_requests.fetch_add(1);
          cancelled_by_api.fetch_add(*engine->Cancel(p, std::vector<uint64_t>{t}));
        }
      }
    });
  }
  threads.emplace_back([&] {  // telemetry reader: never sees a status outside the protocol
    TelemetrySnapshot t;
    while (producing.load()) {
      ASSERT_TRUE(engine->Telemetry({}, &t).ok());
      if (t.occupancy.invalid != 0) invalid_status_seen = true;
    }
  });
  for (uint32_t p = 0; p < kProducers; ++p) threads[p].join();
  producing = false;
  threads.back().join();

  const uint64_t total = kProducers * kSlotsPerProducer;
  auto drained = engine->Drain(absl::Now() + absl::Seconds(120));
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(drained->accepted, total);
  EXPECT_EQ(drained->accepted, drained->done + drained->faulted + drained->cancelled);
  EXPECT_EQ(ledger.total(), total);
  EXPECT_EQ(ledger.duplicates(), 0u);
  for (uint32_t p = 0; p < kProducers; ++p) EXPECT_EQ(ledger.missing(p, kSlotsPerProducer), 0u);
  EXPECT_EQ(ledger.cancelled(), cancelled_by_api.load());
  EXPECT_EQ(ledger.faulted(), 0u);
  EXPECT_GT(cancel_requests.load(), 0u);
  EXPECT_FALSE(invalid_status_seen.load());
}

TEST(EngineConcurrencyTest, ConcurrentWaitersEachGetTheirOwnTickets) {
  MK_REQUIRE_BACKEND(testing::BackendUnderTest());
  EngineOptions o = testing::SuiteOptions();
  o.workers = 2;
  o.max_tenants = 8;
  auto engine = *CreateEngine(o);
  ASSERT_TRUE(engine->Start().ok());
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (uint32_t tenant = 0; tenant < 4; ++tenant) {
    threads.emplace_back([&, tenant] {
      for (uint32_t i = 0; i < 2000; ++i) {
        SlotPayload s = Slot(op::kAtomicAdd, {1, 0});
        auto r = engine->Publish(tenant, {&s, 1}, {});
        ASSERT_TRUE(r.ok()) << r.status();
        auto done = engine->WaitFor(tenant, std::vector<uint64_t>{r->first_ticket},
                                    absl::Now() + absl::Seconds(30));
        ASSERT_TRUE(done.ok());
        ASSERT_EQ(done->size(), 1u);
        // Each tenant's counter increments once per slot: result0 is the count before.
        if ((*done)[0].results[0] != i || (*done)[0].ticket != r->first_ticket) ++mismatches;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace mk::engine
