// CompletionBatcher (declared in ring_host.h): groups completions by sink and aggregates the
// outcome counters and latency histogram of a reap pass before adding them to the RingHost.
#include <chrono>

#include "host/ring_host.h"

namespace mk::engine::host {

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

CompletionBatcher::CompletionBatcher(RingHost* host) : host_(host) {
  batch_.reserve(256);
  publish_times_.reserve(256);
}

void CompletionBatcher::Add(CompletionSink* sink, const Completion& c, uint64_t publish_ns) {
  if (sink == nullptr) sink = &host_->store();
  if (sink != current_ || batch_.size() == batch_.capacity()) {
    Deliver();
    current_ = sink;
  }
  batch_.push_back(c);
  Outcome outcome = Outcome::kDone;
  switch (c.status) {
    case CompletionStatus::kDone: ++done_; break;
    case CompletionStatus::kFault: ++faulted_; outcome = Outcome::kFaulted; break;
    case CompletionStatus::kCancelled: ++cancelled_; outcome = Outcome::kCancelled; break;
  }
  if (c.tenant != counts_tenant_) {
    FlushTenantCounts();
    counts_tenant_ = c.tenant;
  }
  ++counts_[static_cast<uint32_t>(OpcodeClassOf(c.opcode))][static_cast<uint32_t>(outcome)];
  if (publish_ns != 0 && host_->collect_latency()) publish_times_.push_back(publish_ns);
}

void CompletionBatcher::FlushTenantCounts() {
  if (counts_tenant_ == UINT32_MAX) return;
  host_->AddOutcomeCounts(counts_tenant_, counts_);
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
    host_->RecordLatency(latency_);
    latency_.Clear();
  }
  host_->AddOutcomes(done_, faulted_, cancelled_);
  done_ = faulted_ = cancelled_ = 0;
}

}  // namespace mk::engine::host
