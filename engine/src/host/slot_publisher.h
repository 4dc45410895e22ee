// SlotPublisher: the publish path (docs/design.md, "A slot's path"). For one validated batch:
// reserve its sequences in each priority's partition, issue its tickets, write every slot's
// bookkeeping, payload and STATUS=PUBLISHED without a lock (producers write in parallel), link
// each BATCH_FENCE to its predecessors, and commit, after which executors see the batch, whole.
//
// Thread safety: Publish may be called from any number of threads.
#ifndef MK_ENGINE_SRC_HOST_SLOT_PUBLISHER_H_
#define MK_ENGINE_SRC_HOST_SLOT_PUBLISHER_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "host/completion_store.h"
#include "host/outcome_ledger.h"
#include "host/partitioned_ring.h"
#include "host/tenant_shares.h"
#include "host/ticket_book.h"
#include "mk/engine/engine.h"

namespace mk::engine::host {

class SlotPublisher {
 public:
  // `max_stored_completions`: completions owed to WaitFor (published without a sink, not yet
  // collected) beyond which Publish answers RESOURCE_EXHAUSTED; `max_per_tenant` the same for
  // one tenant (0: no per-tenant limit). Every reference must outlive the publisher.
  SlotPublisher(PartitionedRing& ring, TicketBook& tickets, OutcomeLedger& ledger,
                CompletionStore& store, TenantShares& shares, uint64_t max_stored_completions,
                uint64_t max_per_tenant);

  // Publishes `slots` (already validated: opcodes, priorities, fences) for `tenant`, all or
  // none. RESOURCE_EXHAUSTED with a retry hint when a partition is full, the tenant holds its
  // fair share of it (TenantShares) or too many completions are owed; INVALID_ARGUMENT when one
  // priority's slots exceed what one tenant may hold of its partition.
  absl::StatusOr<PublishResult> Publish(uint32_t tenant, absl::Span<const SlotPayload> slots,
                                        CompletionSink* sink);

 private:
  // Takes the tenant's share of the ring for `wanted` (TenantShares::Admit), moving the tails
  // once when it is refused.
  absl::Status Admit(uint32_t tenant, const PriorityCounts& wanted);
  absl::Status CheckStoreRoom(uint32_t tenant, size_t slots, const CompletionSink* sink) const;
  // Writes each slot's meta, payload and STATUS=PUBLISHED into its reserved ring slot and
  // records where it went in `index_of`. Nothing is visible to executors until Commit.
  // Returns whether the batch holds a BATCH_FENCE.
  bool WriteSlots(uint32_t tenant, absl::Span<const SlotPayload> slots, CompletionSink* sink,
                  const PartitionedRing::Reservation& reservation, uint64_t first_ticket,
                  absl::Span<uint32_t> index_of, OutcomeCounts* published);
  // Points each fence's predecessors at it and sets how many it waits for.
  void LinkFences(absl::Span<const SlotPayload> slots, absl::Span<const uint32_t> index_of);

  PartitionedRing& ring_;
  TicketBook& tickets_;
  OutcomeLedger& ledger_;
  CompletionStore& store_;
  TenantShares& shares_;
  const uint64_t max_stored_completions_;
  const uint64_t max_per_tenant_;
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_SLOT_PUBLISHER_H_
