// CompletionBatcher: collects the completions of one reap pass (or cancellation, or io resume)
// and delivers them in runs that share a sink: a Stream, a waiting Publish, or the engine's
// CompletionStore for slots published without one. It counts outcomes locally and adds them to
// the OutcomeLedger after delivering, so the totals never run ahead of delivered completions
// and reapers do not contend per slot.
//
// Thread safety: one thread uses a batcher at a time (each reaper, worker or caller has its
// own). Lifetime: the destructor flushes; the ledger and the default sink must outlive it.
#ifndef MK_ENGINE_SRC_HOST_COMPLETION_BATCHER_H_
#define MK_ENGINE_SRC_HOST_COMPLETION_BATCHER_H_

#include <cstdint>
#include <vector>

#include "host/outcome_ledger.h"
#include "mk/engine/engine.h"

namespace mk::engine::host {

class CompletionBatcher {
 public:
  // Completions added without a sink go to `default_sink`. (The slots they came from go back
  // to their tenants' shares when the ring's tail passes them: PartitionedRing::AdvanceTail.)
  CompletionBatcher(OutcomeLedger& ledger, CompletionSink& default_sink);
  CompletionBatcher(const CompletionBatcher&) = delete;
  CompletionBatcher& operator=(const CompletionBatcher&) = delete;
  ~CompletionBatcher() { Flush(); }

  // `publish_ns` (0 = unknown) feeds the publish-to-completion latency histogram.
  void Add(CompletionSink* sink, const Completion& c, uint64_t publish_ns);
  // Delivers what was added and adds its counts to the ledger.
  void Flush();

 private:
  void Deliver();
  void FlushTenantCounts();

  OutcomeLedger& ledger_;
  CompletionSink& default_sink_;
  CompletionSink* current_ = nullptr;
  std::vector<Completion> batch_;
  uint64_t done_ = 0, faulted_ = 0, cancelled_ = 0;
  // Outcome counts of the tenant seen last, by opcode class (flushed when the tenant changes).
  uint32_t counts_tenant_ = UINT32_MAX;
  OutcomeCounts counts_{};
  LatencyHistogram latency_;
  LatencyRecorder latency_recorder_{&latency_};
  // Publish times of the completions added since the last Flush: recorded there, after the
  // completions were delivered, so reading the clock is not on their way out.
  std::vector<uint64_t> publish_times_;
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_COMPLETION_BATCHER_H_
