#include "host/completion_batcher.h"

namespace mk::engine::host {

CompletionBatcher::CompletionBatcher(OutcomeLedger& ledger, CompletionSink& default_sink)
    : ledger_(ledger), default_sink_(default_sink) {
  batch_.reserve(256);
  publish_times_.reserve(256);
}

void CompletionBatcher::Add(CompletionSink* sink, const Completion& c, uint64_t publish_ns) {
  if (sink == nullptr) sink = &default_sink_;
  if (sink != current_ || batch_.size() == batch_.capacity()) {
    Deliver();
    current_ = sink;
  }
  batch_.push_back(c);
  Outcome outcome = Outcome::kDone;
  switch (c.status) {
    case CompletionStatus::kDone:
      ++done_;
      break;
    case CompletionStatus::kFault:
      ++faulted_;
      outcome = Outcome::kFaulted;
      break;
    case CompletionStatus::kCancelled:
      ++cancelled_;
      outcome = Outcome::kCancelled;
      break;
  }
  if (c.tenant != counts_tenant_) {
    FlushTenantCounts();
    counts_tenant_ = c.tenant;
  }
  ++counts_[static_cast<uint32_t>(OpcodeClassOf(c.opcode))][static_cast<uint32_t>(outcome)];
  if (publish_ns != 0 && ledger_.collect_latency()) publish_times_.push_back(publish_ns);
}

void CompletionBatcher::FlushTenantCounts() {
  if (counts_tenant_ == UINT32_MAX) return;
  ledger_.AddOutcomeCounts(counts_tenant_, counts_);
  counts_ = {};
  counts_tenant_ = UINT32_MAX;
}

void CompletionBatcher::Deliver() {
  if (!batch_.empty()) current_->OnCompletions(batch_);
  batch_.clear();
}

void CompletionBatcher::Flush() {
  Deliver();
  if (!publish_times_.empty()) {
    latency_recorder_.SetNow(NowNs());  // once per flush
    for (uint64_t published : publish_times_) latency_recorder_.Record(published);
    publish_times_.clear();
  }
  if (done_ + faulted_ + cancelled_ == 0) return;
  FlushTenantCounts();
  if (!latency_.empty()) {
    ledger_.RecordLatency(latency_);
    latency_.Clear();
  }
  ledger_.AddOutcomes(done_, faulted_, cancelled_);
  done_ = faulted_ = cancelled_ = 0;
}

}  // namespace mk::engine::host
