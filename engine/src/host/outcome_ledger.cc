#include "host/outcome_ledger.h"

#include <chrono>

namespace mk::engine::host {

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

OutcomeLedger::OutcomeLedger(uint32_t max_tenants, bool collect_latency)
    : collect_latency_(collect_latency),
      max_tenants_(max_tenants),
      outcome_counts_(
          new std::atomic<uint64_t>[size_t{max_tenants} * kOpcodeClassCount * kOutcomeCount]) {
  for (size_t i = 0; i < size_t{max_tenants_} * kOpcodeClassCount * kOutcomeCount; ++i) {
    outcome_counts_[i].store(0, std::memory_order_relaxed);
  }
}

void OutcomeLedger::AddOutcomes(uint64_t done, uint64_t faulted, uint64_t cancelled) {
  if (done != 0) done_.fetch_add(done, std::memory_order_acq_rel);
  if (faulted != 0) faulted_.fetch_add(faulted, std::memory_order_acq_rel);
  if (cancelled != 0) cancelled_.fetch_add(cancelled, std::memory_order_acq_rel);
}

void OutcomeLedger::AddOutcomeCounts(uint32_t tenant, const OutcomeCounts& counts) {
  std::atomic<uint64_t>* row = &outcome_counts_[size_t{tenant} * kOpcodeClassCount * kOutcomeCount];
  for (uint32_t k = 0; k < kOpcodeClassCount; ++k) {
    for (uint32_t o = 0; o < kOutcomeCount; ++o) {
      if (counts[k][o] != 0) {
        row[k * kOutcomeCount + o].fetch_add(counts[k][o], std::memory_order_relaxed);
      }
    }
  }
}

uint64_t OutcomeLedger::in_flight() const {
  const uint64_t finished = done_.load(std::memory_order_acquire) +
                            faulted_.load(std::memory_order_acquire) +
                            cancelled_.load(std::memory_order_acquire);
  return accepted_.load(std::memory_order_acquire) - finished;
}

EngineCounters OutcomeLedger::counters() const {
  EngineCounters c;
  c.done = done_.load(std::memory_order_acquire);
  c.faulted = faulted_.load(std::memory_order_acquire);
  c.cancelled = cancelled_.load(std::memory_order_acquire);
  c.accepted = accepted_.load(std::memory_order_acquire);
  c.in_flight = c.accepted - c.done - c.faulted - c.cancelled;
  return c;
}

void OutcomeLedger::Stats(EngineStats* out) const {
  out->by_tenant.resize(max_tenants_);
  for (uint32_t t = 0; t < max_tenants_; ++t) {
    const std::atomic<uint64_t>* row =
        &outcome_counts_[size_t{t} * kOpcodeClassCount * kOutcomeCount];
    for (uint32_t k = 0; k < kOpcodeClassCount; ++k) {
      for (uint32_t o = 0; o < kOutcomeCount; ++o) {
        out->by_tenant[t][k][o] = row[k * kOutcomeCount + o].load(std::memory_order_relaxed);
      }
    }
  }
  latency_.Snapshot(&out->latency);
  queue_wait_.Snapshot(&out->queue_wait);
}

}  // namespace mk::engine::host
