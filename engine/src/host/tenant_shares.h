// TenantShares: how many slots of each priority partition every tenant holds (published and not
// yet reaped), and the admission rule that keeps one tenant from taking a partition away from
// the others (docs/security.md, "Fair share of the ring").
//
// The rule, per partition of S slots: H = S - S/16 slots may be held by tenants in all (the
// last sixteenth is headroom a newcomer can always publish into; H may be set lower with
// EngineOptions::max_tenant_partition_share), and a tenant may hold at most H / A of them, A
// being the tenants that hold slots there (itself included). A tenant alone
// may hold H; when a second one arrives, the first is refused until its share drains to H / 2.
// A slot is held from its publish until the ring's tail passes it, so the holds add up to the
// partition's in-flight span and the headroom is free room whatever order slots complete in.
// Executors claim a partition in FIFO order, so equal holds mean equal throughput for
// backlogged tenants (Little's law), and a slot admitted into a partition waits behind at most
// H others. Optionally a fixed cap bounds a tenant's slots over all partitions.
//
// Thread safety: every method may be called from any thread (atomics; a tenant's hold is
// checked and taken with one fetch_add, so concurrent publishers of one tenant never exceed its
// share together; the active-tenant counts may lag a transition in progress by one).
// Lifetime: owned by the engine, outlives its publisher and reaper.
#ifndef MK_ENGINE_SRC_HOST_TENANT_SHARES_H_
#define MK_ENGINE_SRC_HOST_TENANT_SHARES_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "mk/engine/protocol.h"

namespace mk::engine::host {

using PartitionCounts = std::array<uint32_t, protocol::kPriorityCount>;

class TenantShares {
 public:
  // `partition_sizes`: each partition's slots; `max_per_tenant`: a tenant's slots in flight
  // over all partitions (0: no fixed cap, the fair share alone). `fair_share` false: holds are
  // counted and capped by `max_per_tenant` only (any tenant may fill a partition).
  // `max_share`: the most of a partition one tenant may hold (at most 15/16).
  TenantShares(uint32_t max_tenants, const PartitionCounts& partition_sizes,
               uint64_t max_per_tenant, bool fair_share = true, double max_share = 15.0 / 16.0);

  // The most slots one tenant may hold in `partition` (and so the largest batch of that
  // priority it can ever publish).
  uint32_t max_hold(uint32_t partition) const { return max_hold_[partition]; }

  // Takes `wanted[p]` slots of each partition for `tenant`, or nothing: RESOURCE_EXHAUSTED
  // (naming the partition, the tenant's hold, its share and the tenants sharing) when that
  // would exceed its share or the fixed cap. INVALID_ARGUMENT when a batch exceeds max_hold.
  absl::Status Admit(uint32_t tenant, const PartitionCounts& wanted);
  // Gives back slots Admit took (a publish that failed after Admit).
  void Cancel(uint32_t tenant, const PartitionCounts& wanted);
  // `count` slots of `tenant` in `partition` were passed by the ring's tail (reaped, cancelled
  // or failed, and their room reusable: PartitionedRing::AdvanceTail).
  void Release(uint32_t tenant, uint32_t partition, uint64_t count);

  int64_t held(uint32_t tenant, uint32_t partition) const {
    return rows_[tenant].held[partition].load(std::memory_order_acquire);
  }
  uint32_t active_tenants(uint32_t partition) const {
    return active_[partition].load(std::memory_order_acquire);
  }

 private:
  struct alignas(64) Row {
    std::array<std::atomic<int64_t>, protocol::kPriorityCount> held{};
  };
  // Adds `delta` to the tenant's hold of `partition` and keeps the active count in step; returns
  // the hold before.
  int64_t Add(uint32_t tenant, uint32_t partition, int64_t delta);
  int64_t TotalHeld(uint32_t tenant) const;

  const uint32_t max_tenants_;
  const uint64_t max_per_tenant_;
  const bool fair_share_;
  PartitionCounts max_hold_{};
  std::unique_ptr<Row[]> rows_;
  std::array<std::atomic<uint32_t>, protocol::kPriorityCount> active_{};
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_TENANT_SHARES_H_
