// CompletionStore: Take gets every completion whichever way it arrives (already stored, handed
// to a waiter spinning for its one missing ticket, or after the waiter spun out and blocked),
// and the owed count stays exact.
#include "host/completion_store.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace mk::engine::host {
namespace {

Completion Done(uint32_t tenant, uint64_t ticket, uint32_t result) {
  Completion c;
  c.tenant = tenant;
  c.ticket = ticket;
  c.status = CompletionStatus::kDone;
  c.results[0] = result;
  return c;
}

// Waits (yielding) until `ready` holds: the other thread has reached the state under test.
template <typename Ready>
void AwaitState(Ready ready) {
  while (!ready()) std::this_thread::yield();
}

TEST(CompletionStoreTest, StoredCompletionIsTakenAtOnce) {
  CompletionStore store;
  store.AddOwed(1);
  const Completion c = Done(1, 7, 42);
  store.OnCompletions({&c, 1});
  const std::vector<uint64_t> tickets{7};
  auto got = store.Take(1, tickets, absl::Now() + absl::Seconds(10));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].results[0], 42u);
  EXPECT_EQ(store.owed(), 0u);
  EXPECT_EQ(store.size(), 0u);
}

TEST(CompletionStoreTest, SpinningWaiterGetsItsTicketHandedOver) {
  CompletionStore store;
  for (uint64_t ticket = 0; ticket < 500; ++ticket) {
    store.AddOwed(1);
    std::vector<Completion> got;
    std::thread waiter([&] {
      const std::vector<uint64_t> tickets{ticket};
      got = store.Take(3, tickets, absl::Now() + absl::Seconds(30));
    });
    AwaitState([&] { return store.handoff_waiters() != 0 || store.blocked_waiters() != 0; });
    // Another tenant's completion of the same ticket number is not the waiter's.
    store.AddOwed(1);
    const Completion other = Done(4, ticket, 1);
    const Completion mine = Done(3, ticket, 2);
    store.OnCompletions({&other, 1});
    store.OnCompletions({&mine, 1});
    waiter.join();
    ASSERT_EQ(got.size(), 1u) << "ticket " << ticket;
    EXPECT_EQ(got[0].tenant, 3u);
    EXPECT_EQ(got[0].results[0], 2u);
    EXPECT_EQ(store.handoff_waiters(), 0u);
    const std::vector<uint64_t> others{ticket};
    ASSERT_EQ(store.Take(4, others, absl::Now()).size(), 1u);  // still stored for tenant 4
    EXPECT_EQ(store.owed(), 0u);
  }
}

TEST(CompletionStoreTest, HandoffCompletesATakeOfSeveralTickets) {
  CompletionStore store;
  store.AddOwed(2);
  const Completion first = Done(0, 1, 10);
  store.OnCompletions({&first, 1});
  std::vector<Completion> got;
  std::thread waiter([&] {
    const std::vector<uint64_t> tickets{1, 2};
    got = store.Take(0, tickets, absl::Now() + absl::Seconds(30));
  });
  AwaitState([&] { return store.handoff_waiters() != 0 || store.blocked_waiters() != 0; });
  const Completion second = Done(0, 2, 20);
  store.OnCompletions({&second, 1});
  waiter.join();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].results[0] + got[1].results[0], 30u);
  EXPECT_EQ(store.owed(), 0u);
}

TEST(CompletionStoreTest, WaiterThatSpunOutAndBlockedIsWoken) {
  CompletionStore store;
  store.AddOwed(1);
  std::vector<Completion> got;
  std::thread waiter([&] {
    const std::vector<uint64_t> tickets{9};
    got = store.Take(0, tickets, absl::Now() + absl::Seconds(30));
  });
  AwaitState([&] { return store.blocked_waiters() != 0; });  // past its spin
  EXPECT_EQ(store.handoff_waiters(), 0u);  // unregistered when it stopped spinning
  const Completion c = Done(0, 9, 5);
  store.OnCompletions({&c, 1});
  waiter.join();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].results[0], 5u);
  EXPECT_EQ(store.owed(), 0u);
}

TEST(CompletionStoreTest, DeadlinePassesWithNothingDelivered) {
  CompletionStore store;
  store.AddOwed(1);
  const std::vector<uint64_t> tickets{3};
  EXPECT_TRUE(store.Take(0, tickets, absl::Now() + absl::Milliseconds(2)).empty());
  EXPECT_EQ(store.handoff_waiters(), 0u);
  // Delivered later, it is stored for the next Take.
  const Completion c = Done(0, 3, 1);
  store.OnCompletions({&c, 1});
  EXPECT_EQ(store.Take(0, tickets, absl::Now()).size(), 1u);
  EXPECT_EQ(store.owed(), 0u);
}

TEST(CompletionStoreTest, ManySpinningWaitersEachGetTheirOwn) {
  CompletionStore store;
  constexpr int kWaiters = 12;  // more than the handoff table holds
  store.AddOwed(kWaiters);
  std::vector<std::vector<Completion>> got(kWaiters);
  std::vector<std::thread> waiters;
  waiters.reserve(kWaiters);
  for (int w = 0; w < kWaiters; ++w) {
    waiters.emplace_back([&, w] {
      const std::vector<uint64_t> tickets{static_cast<uint64_t>(w)};
      got[w] = store.Take(0, tickets, absl::Now() + absl::Seconds(30));
    });
  }
  for (int w = kWaiters - 1; w >= 0; --w) {
    const Completion c = Done(0, w, 100 + w);
    store.OnCompletions({&c, 1});
  }
  for (auto& t : waiters) t.join();
  for (int w = 0; w < kWaiters; ++w) {
    ASSERT_EQ(got[w].size(), 1u) << w;
    EXPECT_EQ(got[w][0].results[0], 100u + w);
  }
  EXPECT_EQ(store.owed(), 0u);
  EXPECT_EQ(store.size(), 0u);
}

}  // namespace
}  // namespace mk::engine::host
