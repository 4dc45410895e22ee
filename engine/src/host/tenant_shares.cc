#include "host/tenant_shares.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace mk::engine::host {

using protocol::kPriorityCount;
using protocol::kPriorityNames;

TenantShares::TenantShares(uint32_t max_tenants, const PartitionCounts& partition_sizes,
                           uint64_t max_per_tenant, bool fair_share, double max_share)
    : max_tenants_(max_tenants),
      max_per_tenant_(max_per_tenant),
      fair_share_(fair_share),
      rows_(new Row[max_tenants]) {
  for (uint32_t p = 0; p < kPriorityCount; ++p) {
    const uint32_t size = partition_sizes[p];
    const auto by_share = static_cast<uint32_t>(static_cast<double>(size) * max_share);
    max_hold_[p] = fair_share ? std::max(1u, std::min(size - size / 16, by_share)) : size;
  }
}

int64_t TenantShares::Add(uint32_t tenant, uint32_t partition, int64_t delta) {
  const int64_t before = rows_[tenant].held[partition].fetch_add(delta, std::memory_order_acq_rel);
  const bool was_active = before > 0;
  const bool is_active = before + delta > 0;
  if (is_active && !was_active) active_[partition].fetch_add(1, std::memory_order_acq_rel);
  if (was_active && !is_active) active_[partition].fetch_sub(1, std::memory_order_acq_rel);
  return before;
}

int64_t TenantShares::TotalHeld(uint32_t tenant) const {
  int64_t total = 0;
  for (const auto& held : rows_[tenant].held) total += held.load(std::memory_order_acquire);
  return total;
}

absl::Status TenantShares::Admit(uint32_t tenant, const PartitionCounts& wanted) {
  uint64_t total_wanted = 0;
  for (uint32_t p = 0; p < kPriorityCount; ++p) {
    total_wanted += wanted[p];
    if (wanted[p] > max_hold_[p]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "publish: ", wanted[p], " ", kPriorityNames[p], " slots in one batch exceed what one ",
          "tenant may hold in the ", kPriorityNames[p], " partition (", max_hold_[p],
          " slots); split the batch"));
    }
  }
  if (max_per_tenant_ != 0) {
    const int64_t held = TotalHeld(tenant);
    if (static_cast<uint64_t>(std::max<int64_t>(held, 0)) + total_wanted > max_per_tenant_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "engine: tenant ", tenant, " has ", held, " slots in flight and may have ",
          max_per_tenant_, " (--max_outstanding_slots_per_tenant); collect completions before ",
          "publishing ", total_wanted, " more"));
    }
  }
  for (uint32_t p = 0; p < kPriorityCount; ++p) {
    if (wanted[p] == 0) continue;
    const int64_t before = Add(tenant, p, wanted[p]);
    // Tenants holding slots here, this one included (it counts itself by now).
    const uint32_t sharing = std::max(1u, active_[p].load(std::memory_order_acquire));
    const uint64_t share = std::max<uint64_t>(1, max_hold_[p] / sharing);
    if (!fair_share_ || before + wanted[p] <= static_cast<int64_t>(share)) continue;
    Add(tenant, p, -static_cast<int64_t>(wanted[p]));
    for (uint32_t q = 0; q < p; ++q) {
      if (wanted[q] != 0) Add(tenant, q, -static_cast<int64_t>(wanted[q]));
    }
    return absl::ResourceExhaustedError(
        absl::StrCat("engine: tenant ", tenant, " holds ", std::max<int64_t>(before, 0), " of the ",
                     kPriorityNames[p], " partition's slots and asked for ", wanted[p],
                     " more; with ", sharing, " tenants publishing there its fair share is ", share,
                     "; retry after about 50us with backoff, once its slots complete"));
  }
  return absl::OkStatus();
}

void TenantShares::Cancel(uint32_t tenant, const PartitionCounts& wanted) {
  for (uint32_t p = 0; p < kPriorityCount; ++p) {
    if (wanted[p] != 0) Add(tenant, p, -static_cast<int64_t>(wanted[p]));
  }
}

void TenantShares::Release(uint32_t tenant, uint32_t partition, uint64_t count) {
  if (tenant >= max_tenants_ || partition >= kPriorityCount || count == 0) return;
  Add(tenant, partition, -static_cast<int64_t>(count));
}

}  // namespace mk::engine::host
