#include "host/slot_publisher.h"

#include <algorithm>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "host/prefetch.h"
#include "mk/base/status_macros.h"

namespace mk::engine::host {

namespace {

// Slots per priority, counted by runs: a batch usually carries one priority, and a per-slot
// increment of one stack word is a store-forwarding chain (perf: two thirds of Publish).
PriorityCounts CountByPriority(absl::Span<const SlotPayload> slots) {
  PriorityCounts wanted{};
  for (size_t i = 0; i < slots.size();) {
    const uint32_t priority = slots[i].priority;
    size_t end = i + 1;
    while (end < slots.size() && slots[end].priority == priority) ++end;
    wanted[priority] += static_cast<uint32_t>(end - i);
    i = end;
  }
  return wanted;
}

}  // namespace

SlotPublisher::SlotPublisher(PartitionedRing& ring, TicketBook& tickets, OutcomeLedger& ledger,
                             CompletionStore& store, TenantShares& shares,
                             uint64_t max_stored_completions, uint64_t max_per_tenant)
    : ring_(ring),
      tickets_(tickets),
      ledger_(ledger),
      store_(store),
      shares_(shares),
      max_stored_completions_(max_stored_completions),
      max_per_tenant_(max_per_tenant) {}

absl::StatusOr<PublishResult> SlotPublisher::Publish(uint32_t tenant,
                                                     absl::Span<const SlotPayload> slots,
                                                     CompletionSink* sink) {
  MK_RETURN_IF_ERROR(CheckStoreRoom(tenant, slots.size(), sink));
  const PriorityCounts wanted = CountByPriority(slots);
  MK_RETURN_IF_ERROR(Admit(tenant, wanted));
  absl::StatusOr<PartitionedRing::Reservation> reserved = ring_.Reserve(wanted);
  if (!reserved.ok()) {
    shares_.Cancel(tenant, wanted);
    return reserved.status();
  }
  PartitionedRing::Reservation reservation = *std::move(reserved);
  // Under the reservation: a tenant's tickets follow the order its slots enter the ring.
  const uint64_t first_ticket = tickets_.Issue(tenant, slots.size());
  reservation.Unlock();
  absl::InlinedVector<uint32_t, 64> index_of(slots.size());  // batch position -> ring slot
  OutcomeCounts published{};
  if (WriteSlots(tenant, slots, sink, reservation, first_ticket, absl::MakeSpan(index_of),
                 &published)) {
    LinkFences(slots, index_of);
  }
  if (sink == nullptr) store_.AddOwed(tenant, slots.size());  // before any of them can be taken
  ledger_.AddAccepted(slots.size());
  ring_.Commit(reservation);
  ledger_.AddOutcomeCounts(tenant, published);
  return PublishResult{first_ticket, static_cast<uint32_t>(slots.size())};
}

absl::Status SlotPublisher::Admit(uint32_t tenant, const PriorityCounts& wanted) {
  absl::Status admitted = shares_.Admit(tenant, wanted);
  if (!absl::IsResourceExhausted(admitted)) return admitted;
  // The tenant's slots go back to its share when the ring's tail passes them, which the reaper
  // does after delivering their completions: a caller that got every completion may publish
  // before that, so move the tails here and ask once more (every partition's: the fixed cap
  // counts the tenant's slots in all of them).
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) ring_.AdvanceTail(p);
  return shares_.Admit(tenant, wanted);
}

absl::Status SlotPublisher::CheckStoreRoom(uint32_t tenant, size_t slots,
                                           const CompletionSink* sink) const {
  if (sink != nullptr) return absl::OkStatus();
  if (max_per_tenant_ != 0 && store_.owed(tenant) + slots > max_per_tenant_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("engine: tenant ", tenant, " is owed ", store_.owed(tenant),
                     " completions (in flight or stored) and may hold ", max_per_tenant_,
                     "; poll them before publishing more (uncollected ones are dropped after ",
                     absl::FormatDuration(store_.ttl()), ")"));
  }
  if (store_.owed() + slots <= max_stored_completions_) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("engine: ", store_.owed(),
                   " completions are owed to Poll (in flight or stored); poll "
                   "them (WaitFor) before publishing more, or publish with a completion sink"));
}

bool SlotPublisher::WriteSlots(uint32_t tenant, absl::Span<const SlotPayload> slots,
                               CompletionSink* sink,
                               const PartitionedRing::Reservation& reservation,
                               uint64_t first_ticket, absl::Span<uint32_t> index_of,
                               OutcomeCounts* published) {
  const uint64_t publish_ns = ledger_.collect_latency() ? NowNs() : 0;
  // Ring indices advance without a division per slot: the sequence -> index modulo is taken
  // once per partition the batch uses.
  std::array<uint32_t, protocol::kPriorityCount> next_index{};
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    if (reservation.count(p) != 0) next_index[p] = ring_.IndexOf(p, reservation.first_sequence(p));
  }
  // The ring and meta lines were last written by the executor that reaped them, on another
  // core: ask for them some slots ahead so their transfers overlap.
  constexpr uint32_t kPrefetchAhead = 32;
  bool has_fence = false;
  for (size_t i = 0; i < slots.size(); ++i) {
    const SlotPayload& slot = slots[i];
    const uint32_t p = slot.priority;
    const uint32_t index = next_index[p];
    next_index[p] = ring_.Advance(p, index, 1);
    if (ring_.partition_size(p) > kPrefetchAhead) {
      const uint32_t ahead = ring_.Advance(p, index, kPrefetchAhead);
      PrefetchForWrite(ring_.slot(ahead));
      PrefetchForWrite(&ring_.meta(ahead));
    }
    index_of[i] = index;
    has_fence |= slot.opcode == protocol::opcode::kBatchFence;
    SlotMeta& m = ring_.meta(index);
    m.ticket.store(first_ticket + i, std::memory_order_relaxed);
    m.publish_ns = publish_ns;
    m.sink = sink;
    m.fence_waiter = kNoFence;
    m.fence_pending.store(0, std::memory_order_relaxed);
    ++(*published)[static_cast<uint32_t>(OpcodeClassOf(slot.opcode))]
                  [static_cast<uint32_t>(Outcome::kPublished)];
    uint32_t* w = ring_.slot(index);
    w[protocol::kWordOpcode] = slot.opcode;
    w[protocol::kWordTenant] = tenant;
    w[protocol::kWordPriority] = slot.priority;
    std::copy(slot.args.begin(), slot.args.end(), w + protocol::kWordArg0);
    // No executor or canceller sees the slot before Commit: the order inside the pass is free.
    PartitionedRing::StoreStatus(w, index, protocol::SlotStatus::kPublished, Actor::kHost,
                                 std::memory_order_release);
  }
  return has_fence;
}

void SlotPublisher::LinkFences(absl::Span<const SlotPayload> slots,
                               absl::Span<const uint32_t> index_of) {
  // Each slot waits on at most one fence (the first whose range covers it; a later fence waits
  // for it through that one). `next_unlinked` skips slots linked already (a disjoint-set "next
  // free" structure with path halving), so the batch links in O(n) whatever its fences' ranges
  // overlap, instead of rescanning every range (O(n^2): a batch of overlapping fences held the
  // ring's frontier, and every later publisher, for hundreds of milliseconds).
  std::vector<uint32_t> next_unlinked(slots.size() + 1);
  for (size_t j = 0; j <= slots.size(); ++j) next_unlinked[j] = static_cast<uint32_t>(j);
  auto find = [&](uint32_t j) {
    while (next_unlinked[j] != j) {
      next_unlinked[j] = next_unlinked[next_unlinked[j]];
      j = next_unlinked[j];
    }
    return j;
  };
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].opcode != protocol::opcode::kBatchFence) continue;
    uint32_t pending = 0;
    for (uint32_t j = find(static_cast<uint32_t>(i - slots[i].args[0])); j < i; j = find(j + 1)) {
      ring_.meta(index_of[j]).fence_waiter = index_of[i];
      next_unlinked[j] = j + 1;
      ++pending;
    }
    ring_.meta(index_of[i]).fence_pending.store(pending, std::memory_order_relaxed);
  }
}

}  // namespace mk::engine::host
