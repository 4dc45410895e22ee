// CompletionStore: Take gets every completion whichever way it arrives (already stored, handed
// to a waiter spinning for its one missing ticket, or after the waiter spun out and blocked),
// and the owed count stays exact.
#include "host/completion_store.h"

#include <atomic>
#include <optional>
#include <thread>
#include <utility>
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

// Owes `c` to its tenant, delivers it, and takes it back with a synchronous Take.
std::vector<Completion> DeliverAndTake(CompletionStore& store, const Completion& c) {
  store.AddOwed(c.tenant, 1);
  store.OnCompletions({&c, 1});
  const std::vector<uint64_t> tickets{c.ticket};
  return store.Take(c.tenant, tickets, absl::Now() + absl::Seconds(10));
}

TEST(CompletionStoreTest, StoredCompletionIsTakenAtOnce) {
  CompletionStore store{64, absl::Minutes(10)};
  auto got = DeliverAndTake(store, Done(1, 7, 42));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].results[0], 42u);
  EXPECT_EQ(store.owed(), 0u);
  EXPECT_EQ(store.size(), 0u);
}

TEST(CompletionStoreTest, SpinningWaiterGetsItsTicketHandedOver) {
  CompletionStore store{64, absl::Minutes(10)};
  for (uint64_t ticket = 0; ticket < 500; ++ticket) {
    store.AddOwed(3, 1);
    std::vector<Completion> got;
    std::thread waiter([&] {
      const std::vector<uint64_t> tickets{ticket};
      got = store.Take(3, tickets, absl::Now() + absl::Seconds(30));
    });
    AwaitState([&] { return store.handoff_waiters() != 0 || store.blocked_waiters() != 0; });
    // Another tenant's completion of the same ticket number is not the waiter's.
    store.AddOwed(4, 1);
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
  CompletionStore store{64, absl::Minutes(10)};
  store.AddOwed(0, 2);
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
  CompletionStore store{64, absl::Minutes(10)};
  store.AddOwed(0, 1);
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
  CompletionStore store{64, absl::Minutes(10)};
  store.AddOwed(0, 1);
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
  CompletionStore store{64, absl::Minutes(10)};
  constexpr int kWaiters = 12;  // more than the handoff table holds
  store.AddOwed(0, kWaiters);
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

// Owed completions are counted per tenant as well as in all (the per-tenant quota).
TEST(CompletionStoreTest, OwedIsCountedPerTenant) {
  CompletionStore store{64, absl::Minutes(10)};
  store.AddOwed(1, 3);
  store.AddOwed(2, 1);
  EXPECT_EQ(store.owed(), 4u);
  EXPECT_EQ(store.owed(1), 3u);
  EXPECT_EQ(store.owed(2), 1u);
  EXPECT_EQ(store.owed(99), 0u) << "beyond max_tenants: not counted, no crash";
  const Completion c = Done(1, 5, 0);
  store.OnCompletions({&c, 1});
  ASSERT_EQ(store.Take(1, std::vector<uint64_t>{5}, absl::Now()).size(), 1u);
  EXPECT_EQ(store.owed(1), 2u);
  store.Return({&c, 1});
  EXPECT_EQ(store.owed(1), 3u) << "a handed-back completion is owed again";
}

// Completions nobody collects within the time-to-live are dropped (owed no more); those
// collected in time, and those that arrived later, are untouched.
TEST(CompletionStoreTest, UncollectedCompletionsExpire) {
  const absl::Duration ttl = absl::Seconds(80);
  CompletionStore store{64, ttl};
  const absl::Time t0 = absl::Now();
  store.AddOwed(1, 3);
  const Completion old_a = Done(1, 1, 0), old_b = Done(1, 2, 0);
  store.OnCompletions({&old_a, 1});
  store.OnCompletions({&old_b, 1});
  ASSERT_EQ(store.Take(1, std::vector<uint64_t>{2}, absl::Now()).size(), 1u);  // collected
  EXPECT_EQ(store.DropExpired(t0 + ttl / 2), 0u) << "young";
  // Arrivals are stamped with the real clock: the "later" completion is judged against a now
  // just past the first ones' expiry, which is long before its own.
  const Completion young = Done(1, 3, 0);
  store.OnCompletions({&young, 1});
  EXPECT_EQ(store.DropExpired(absl::Now() + ttl + ttl / 8 + absl::Seconds(1)), 2u)
      << "both stored ones are past the time-to-live when judged that late";
  EXPECT_EQ(store.dropped(), 2u);
  EXPECT_EQ(store.owed(), 0u);
  EXPECT_EQ(store.owed(1), 0u);
  EXPECT_EQ(store.size(), 0u);
  EXPECT_TRUE(store.Take(1, std::vector<uint64_t>{1}, absl::Now()).empty());
}

// An expiry scan happens only for buckets that still hold completions; a store whose
// completions are all collected keeps no old buckets and drops nothing.
TEST(CompletionStoreTest, CollectedCompletionsNeverExpire) {
  CompletionStore store{64, absl::Milliseconds(8)};
  for (uint64_t t = 1; t <= 1000; ++t) {
    store.AddOwed(2, 1);
    const Completion c = Done(2, t, 0);
    store.OnCompletions({&c, 1});
    ASSERT_EQ(store.Take(2, std::vector<uint64_t>{t}, absl::Now()).size(), 1u);
  }
  EXPECT_EQ(store.DropExpired(absl::Now() + absl::Hours(1)), 0u);
  EXPECT_EQ(store.owed(), 0u);
}

// What a synchronous Take collected is remembered at once; what a dropped completion was, too.
TEST(CompletionStoreTest, CollectedAndDroppedTicketsAreRemembered) {
  CompletionStore store{64, absl::Milliseconds(10)};
  ASSERT_EQ(DeliverAndTake(store, Done(1, 1, 0)).size(), 1u);
  const std::vector<uint64_t> one{1};
  store.AddOwed(1, 1);
  const Completion dropped = Done(1, 2, 0);
  store.OnCompletions({&dropped, 1});
  AwaitState([&] { return store.DropExpired(absl::Now()) == 1; });
  const std::vector<uint64_t> both{2, 1};
  auto first = store.FirstSettled(1, both);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->ticket, 2u);
  EXPECT_EQ(first->how, CompletionStore::Settled::kDropped);
  EXPECT_EQ(store.FirstSettled(1, one)->how, CompletionStore::Settled::kCollected);
  EXPECT_FALSE(store.FirstSettled(2, one).has_value()) << "per tenant";
  EXPECT_EQ(store.owed(1), 0u);
}

// An asynchronous waiter's completions stay owed and unsettled while its callback runs: one it
// hands back from there (its Poll was cancelled) goes to the next waiter for that ticket and
// is never reported as collected in between; only a delivery that keeps it settles it.
TEST(CompletionStoreTest, HandedBackCompletionsAreNeverReportedCollected) {
  CompletionStore store{64, absl::Minutes(10)};
  store.AddOwed(1, 2);
  const std::vector<uint64_t> t{7};
  const std::vector<uint64_t> t_and_u{7, 8};
  std::vector<Completion> second_got;
  // The second waiter (tickets 7 and 8) is next in line for ticket 7 after the first one.
  store.TakeAsync(1, t, [&](const std::vector<Completion>& got) {
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(store.owed(1), 2u) << "still owed while the callback runs";
    store.Return(got);  // cancelled: hand it back
  });
  const uint64_t second_id = store.TakeAsync(
      1, t_and_u, [&](std::vector<Completion> got) { second_got = std::move(got); });
  const Completion c = Done(1, 7, 5);
  store.OnCompletions({&c, 1});  // to the first waiter, which hands it to the second
  EXPECT_FALSE(store.FirstSettled(1, t).has_value()) << "held by the second waiter";
  EXPECT_EQ(store.owed(1), 2u);
  store.Expire(second_id);  // its Poll ends with ticket 7 and keeps it
  ASSERT_EQ(second_got.size(), 1u);
  EXPECT_EQ(second_got[0].results[0], 5u);
  auto settled = store.FirstSettled(1, t);
  ASSERT_TRUE(settled.has_value());
  EXPECT_EQ(settled->how, CompletionStore::Settled::kCollected);
  EXPECT_EQ(store.owed(1), 1u) << "ticket 8 is still owed";
}

// The answer to a Poll can reach its caller before the callback that sent it returns (and
// settles its tickets): a re-poll right then waited out its whole wait (a flaky gRPC test
// under load). Now FirstSettled waits for the delivery in progress and reports the ticket
// collected.
TEST(CompletionStoreTest, ARepollDuringTheDeliveryIsToldTheTicketWasCollected) {
  CompletionStore store{64, absl::Minutes(10)};
  store.AddOwed(1, 2);
  const std::vector<uint64_t> t{4};
  std::atomic<bool> in_callback{false}, release{false};
  store.TakeAsync(1, t, [&](const std::vector<Completion>&) {
    in_callback = true;
    AwaitState([&] { return release.load(); });  // the answer is out; the callback not done
  });
  std::thread deliverer([&] {
    const Completion c = Done(1, 4, 0);
    store.OnCompletions({&c, 1});
  });
  AwaitState([&] { return in_callback.load(); });
  std::optional<CompletionStore::SettledTicket> settled;
  std::thread repoll([&] { settled = store.FirstSettled(1, t); });
  AwaitState([&] { return store.delivery_watchers() == 1; });  // it waits for the delivery
  release = true;
  repoll.join();
  deliverer.join();
  ASSERT_TRUE(settled.has_value());
  EXPECT_EQ(settled->how, CompletionStore::Settled::kCollected);
  EXPECT_EQ(store.owed(1), 1u);
}

// A synchronous Take's caller that hands completions back makes them pending and owed again.
TEST(CompletionStoreTest, ReturnAfterATakeMakesTheTicketPendingAgain) {
  CompletionStore store{64, absl::Minutes(10)};
  auto got = DeliverAndTake(store, Done(1, 3, 0));
  ASSERT_EQ(got.size(), 1u);
  const std::vector<uint64_t> t{3};
  ASSERT_TRUE(store.FirstSettled(1, t).has_value());
  store.Return(got);
  EXPECT_FALSE(store.FirstSettled(1, t).has_value());
  EXPECT_EQ(store.owed(1), 1u);
  EXPECT_EQ(store.Take(1, t, absl::Now() + absl::Seconds(10)).size(), 1u);
  EXPECT_EQ(store.owed(1), 0u);
}

}  // namespace
}  // namespace mk::engine::host
