// OutcomeLedger: what an engine has accepted and how it ended, for counters, telemetry and the
// metrics layer: totals (accepted = done + faulted + cancelled + in flight), per tenant and
// opcode class counts of each outcome, and the publish-to-completion and publish-to-claim
// latency histograms. Everything is added in aggregated steps (per publish call, reap pass or
// claimed batch), never per slot into a shared word.
//
// Thread safety: every method may be called from any thread (relaxed or acquire/release
// atomics; a snapshot is coherent per counter, not across them).
#ifndef MK_ENGINE_SRC_HOST_OUTCOME_LEDGER_H_
#define MK_ENGINE_SRC_HOST_OUTCOME_LEDGER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "mk/engine/engine.h"
#include "mk/engine/engine_stats.h"

namespace mk::engine::host {

// Monotonic nanoseconds for the latency histograms.
uint64_t NowNs();

// Outcome counts of one tenant, [opcode class][outcome].
using OutcomeCounts = std::array<std::array<uint64_t, kOutcomeCount>, kOpcodeClassCount>;

class OutcomeLedger {
 public:
  // `collect_latency`: whether publishers and reapers read the clock for the histograms.
  OutcomeLedger(uint32_t max_tenants, bool collect_latency);

  bool collect_latency() const { return collect_latency_; }

  // A publish of `accepted` slots was accepted (counted before any of them can complete).
  void AddAccepted(uint64_t accepted) { accepted_.fetch_add(accepted, std::memory_order_acq_rel); }
  // Completions were delivered.
  void AddOutcomes(uint64_t done, uint64_t faulted, uint64_t cancelled);
  void AddOutcomeCounts(uint32_t tenant, const OutcomeCounts& counts);
  void RecordLatency(const LatencyHistogram& h) { latency_.Merge(h); }
  void RecordQueueWait(const LatencyHistogram& h) { queue_wait_.Merge(h); }

  uint64_t in_flight() const;
  // accepted, done, faulted, cancelled and in_flight (the rest of EngineCounters is the
  // engine's).
  EngineCounters counters() const;
  // by_tenant, latency and queue_wait.
  void Stats(EngineStats* out) const;

 private:
  const bool collect_latency_;
  const uint32_t max_tenants_;
  // [tenant][class][outcome] flattened; relaxed atomics, added in aggregated steps.
  std::unique_ptr<std::atomic<uint64_t>[]> outcome_counts_;
  SharedLatencyHistogram latency_;
  SharedLatencyHistogram queue_wait_;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> done_{0};
  std::atomic<uint64_t> faulted_{0};
  std::atomic<uint64_t> cancelled_{0};
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_OUTCOME_LEDGER_H_
