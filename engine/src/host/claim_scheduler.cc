#include "host/claim_scheduler.h"

#include <bit>
#include <utility>

#include "mk/engine/atomics.h"

namespace mk::engine::host {

namespace ctl = protocol::control;
using protocol::SlotStatus;

namespace {

constexpr uint32_t kHighPriorityClasses = 2;  // CRITICAL and HIGH

}  // namespace

template <size_t N>
void ControlCounters::FlushArray(std::array<uint32_t, N>& counts, uint32_t& dirty,
                                 uint32_t* control, uint32_t first) {
  for (; dirty != 0; dirty &= dirty - 1) {
    const uint32_t i = static_cast<uint32_t>(std::countr_zero(dirty));
    protocol::AtomicFetchAdd(&control[first + i], counts[i]);
    counts[i] = 0;
  }
}

void ControlCounters::Flush(uint32_t* control) {
  if (done_count_ != 0) protocol::AtomicFetchAdd(&control[ctl::kDoneCount], done_count_);
  done_count_ = 0;
  FlushArray(opcode_runs_, opcode_dirty_, control, ctl::kOpcodeMetricsFirst);
  FlushArray(tenant_claims_, tenant_dirty_, control, ctl::kTenantFairnessFirst);
  FlushArray(priority_claims_, priority_dirty_, control, ctl::kPriorityFairnessFirst);
}

ClaimScheduler::ClaimScheduler(PartitionedRing& ring, ControlBuffers& control,
                               const TenantGate& tenants, SlotReaper& reaper,
                               std::function<void()> wake)
    : ring_(ring),
      starvation_(&control.control().words()[ctl::kStarvationCounter]),
      tenants_(tenants),
      reaper_(reaper),
      wake_(std::move(wake)) {
  reaper_.SetFenceReadyCallback([this](uint32_t index) { PushReady(index); });
}

bool ClaimScheduler::ClaimNext(uint32_t max, ClaimRange* range) {
  uint32_t* starvation = starvation_;
  // After kStarvationLimit consecutive CRITICAL/HIGH claims, look at the lower classes first.
  const bool prefer_lower = protocol::AtomicLoad(starvation) >= ctl::kStarvationLimit;
  static constexpr uint32_t kNormalOrder[] = {0, 1, 2, 3, 4};
  static constexpr uint32_t kStarvedOrder[] = {2, 3, 4, 0, 1};
  for (uint32_t p : prefer_lower ? kStarvedOrder : kNormalOrder) {
    if (!ring_.HasClaimable(p) || !ring_.ClaimBatch(p, max, range)) continue;
    if (p < kHighPriorityClasses) {
      protocol::AtomicFetchAdd(starvation, 1);
    } else if (protocol::AtomicLoad(starvation) != 0) {
      protocol::AtomicStore(starvation, 0);
    }
    return true;
  }
  return false;
}

bool ClaimScheduler::TryClaim(uint32_t index, ControlCounters& counters,
                              CompletionBatcher& batcher) {
  uint32_t* w = ring_.slot(index);
  const auto status =
      static_cast<SlotStatus>(PartitionedRing::StatusWord(w).load(std::memory_order_acquire));
  if (!protocol::IsClaimable(status)) return false;  // cancelled
  const uint32_t tenant = protocol::AtomicLoad(&w[protocol::kWordTenant]);
  if (!tenants_.Enabled(tenant)) {
    Park(tenant, index, batcher);
    return false;
  }
  if (!PartitionedRing::MoveStatus(w, index, status, SlotStatus::kClaimed, Actor::kEngine)) {
    return false;  // cancelled or claimed through another path
  }
  counters.CountClaim(tenant, w[protocol::kWordPriority]);
  SlotMeta& meta = ring_.meta(index);
  if (w[protocol::kWordOpcode] != protocol::opcode::kBatchFence ||
      meta.fence_pending.load(std::memory_order_seq_cst) == 0) {
    return true;
  }
  // Park the fence; whoever finishes its last predecessor makes it ready
  // (PartitionedRing::ReleaseFence and the fence-ready callback). The re-check closes the window
  // where that happened between the test above and the store (both sequentially consistent).
  PartitionedRing::StoreStatus(w, index, SlotStatus::kRequeue, Actor::kEngine,
                               std::memory_order_seq_cst);
  if (meta.fence_pending.load(std::memory_order_seq_cst) != 0) return false;
  return PartitionedRing::MoveStatus(w, index, SlotStatus::kRequeue, SlotStatus::kClaimed,
                                     Actor::kEngine);
}

void ClaimScheduler::Park(uint32_t tenant, uint32_t index, CompletionBatcher& batcher) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!draining_) {
      if (tenants_.Enabled(tenant)) {  // enabled meanwhile: OnTenantEnabled moved the list already
        ready_.push_back(index);
        ready_count_.store(ready_.size(), std::memory_order_release);
      } else {
        parked_[tenant].push_back(
            ParkedSlot{index, ring_.meta(index).ticket.load(std::memory_order_relaxed)});
        parked_count_.fetch_add(1);
      }
      return;
    }
  }
  // Cancelling may release a fence, which takes mu_ again: do it outside the lock.
  reaper_.CancelSlot(index, &batcher);
}

void ClaimScheduler::PushReady(uint32_t index) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_.push_back(index);
    ready_count_.store(ready_.size(), std::memory_order_release);
  }
  wake_();
}

bool ClaimScheduler::TakeReady(std::vector<uint32_t>* out) {
  out->clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    out->swap(ready_);
    ready_count_.store(0, std::memory_order_release);
  }
  return !out->empty();
}

void ClaimScheduler::OnTenantEnabled(uint32_t tenant) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = parked_.find(tenant);
    if (it == parked_.end()) return;
    for (const ParkedSlot& p : it->second) {
      if (StillParked(p)) ready_.push_back(p.index);  // in FIFO order, stale entries dropped
    }
    parked_count_.fetch_sub(it->second.size());
    parked_.erase(it);
    ready_count_.store(ready_.size(), std::memory_order_release);
  }
  wake_();
}

void ClaimScheduler::BeginDrain(CompletionBatcher* batcher) {
  std::vector<uint32_t> to_cancel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
    for (auto& [tenant, slots] : parked_) {
      for (const ParkedSlot& p : slots) {
        if (StillParked(p)) to_cancel.push_back(p.index);
      }
    }
    parked_.clear();
    parked_count_.store(0);
  }
  for (uint32_t index : to_cancel) reaper_.CancelSlot(index, batcher);
}

bool ClaimScheduler::StillParked(const ParkedSlot& p) const {
  const auto status =
      static_cast<SlotStatus>(ring_.status(p.index).load(std::memory_order_acquire));
  return protocol::IsClaimable(status) &&
         ring_.meta(p.index).ticket.load(std::memory_order_relaxed) == p.ticket;
}

void ClaimScheduler::ForgetCancelledParked(uint32_t tenant) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = parked_.find(tenant);
  if (it == parked_.end()) return;
  std::vector<ParkedSlot>& slots = it->second;
  const size_t before = slots.size();
  std::erase_if(slots, [this](const ParkedSlot& p) { return !StillParked(p); });
  parked_count_.fetch_sub(before - slots.size());
  if (slots.empty()) parked_.erase(it);
}

void ClaimScheduler::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  ready_.clear();
  parked_.clear();
  ready_count_.store(0);
  parked_count_.store(0);
}

}  // namespace mk::engine::host
