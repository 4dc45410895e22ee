// RingHost's telemetry side (declared in ring_host.h): occupancy from the in-flight windows,
// outcome totals and per-tenant counts, latency snapshots. Every function may run while the
// engine runs; none stops anything.
#include <algorithm>

#include "host/ring_host.h"

namespace mk::engine::host {

using protocol::SlotStatus;

void RingHost::CountOccupancy(Occupancy* out) {
  out->by_status.fill(0);
  out->invalid = 0;
  out->total = slot_count();
  uint64_t scanned = 0;
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    Partition& part = partitions_[p];
    uint64_t reserve;
    {
      std::lock_guard<std::mutex> lock(publish_mu_);  // reserve is guarded by it
      reserve = part.reserve;
    }
    const uint64_t tail = std::min(part.tail.load(std::memory_order_acquire), reserve);
    const uint64_t span = std::min<uint64_t>(reserve - tail, part.size);
    ForEachIndex(ClaimRange{p, tail, tail + span}, [&](uint32_t index) {
      const uint32_t status = StatusWord(ring().slot(index)).load(std::memory_order_acquire);
      if (status < protocol::kSlotStatusCount) {
        ++out->by_status[status];
      } else {
        ++out->invalid;
      }
    });
    scanned += span;
  }
  out->by_status[static_cast<uint32_t>(SlotStatus::kEmpty)] += out->total - scanned;
  out->queue_depth = out->total - out->count(SlotStatus::kEmpty) - out->count(SlotStatus::kDone);
}

void RingHost::AddOutcomes(uint64_t done, uint64_t faulted, uint64_t cancelled) {
  if (done != 0) done_.fetch_add(done, std::memory_order_acq_rel);
  if (faulted != 0) faulted_.fetch_add(faulted, std::memory_order_acq_rel);
  if (cancelled != 0) cancelled_.fetch_add(cancelled, std::memory_order_acq_rel);
}

void RingHost::AddOutcomeCounts(
    uint32_t tenant, const std::array<std::array<uint64_t, kOutcomeCount>, kOpcodeClassCount>& c) {
  std::atomic<uint64_t>* row = &outcome_counts_[size_t{tenant} * kOpcodeClassCount * kOutcomeCount];
  for (uint32_t k = 0; k < kOpcodeClassCount; ++k) {
    for (uint32_t o = 0; o < kOutcomeCount; ++o) {
      if (c[k][o] != 0) row[k * kOutcomeCount + o].fetch_add(c[k][o], std::memory_order_relaxed);
    }
  }
}

void RingHost::Stats(EngineStats* out) const {
  out->by_tenant.resize(max_tenants_);
  for (uint32_t t = 0; t < max_tenants_; ++t) {
    const std::atomic<uint64_t>* row = &outcome_counts_[size_t{t} * kOpcodeClassCount * kOutcomeCount];
    for (uint32_t k = 0; k < kOpcodeClassCount; ++k) {
      for (uint32_t o = 0; o < kOutcomeCount; ++o) {
        out->by_tenant[t][k][o] = row[k * kOutcomeCount + o].load(std::memory_order_relaxed);
      }
    }
  }
  latency_.Snapshot(&out->latency);
  queue_wait_.Snapshot(&out->queue_wait);
}

uint64_t RingHost::in_flight() const {
  const uint64_t finished = done_.load(std::memory_order_acquire) +
                            faulted_.load(std::memory_order_acquire) +
                            cancelled_.load(std::memory_order_acquire);
  return accepted_.load(std::memory_order_acquire) - finished;
}

EngineCounters RingHost::counters() const {
  EngineCounters c;
  c.done = done_.load(std::memory_order_acquire);
  c.faulted = faulted_.load(std::memory_order_acquire);
  c.cancelled = cancelled_.load(std::memory_order_acquire);
  c.accepted = accepted_.load(std::memory_order_acquire);
  c.in_flight = c.accepted - c.done - c.faulted - c.cancelled;
  c.stored_completions = store_.size();
  return c;
}

}  // namespace mk::engine::host
