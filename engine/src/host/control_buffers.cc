#include "host/control_buffers.h"

#include "absl/strings/str_cat.h"
#include "host/partitioned_ring.h"
#include "mk/base/page_memory.h"

namespace mk::engine::host {

namespace ctl = protocol::control;

absl::StatusOr<std::unique_ptr<ControlBuffers>> ControlBuffers::Create(uint32_t max_tenants,
                                                                       uint32_t scratch_words,
                                                                       uint32_t debug_log_records) {
  if (debug_log_records < protocol::debug_log::kMinRecords) {
    return absl::InvalidArgumentError(absl::StrCat("engine: debug_log_records ", debug_log_records,
                                                   " is below the protocol minimum of 64"));
  }
  if (max_tenants == 0 || scratch_words == 0 ||
      uint64_t{ctl::kObservablesFirst} + uint64_t{max_tenants} * (uint64_t{scratch_words} + 1) >
          (uint64_t{1} << 28)) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine: max_tenants ", max_tenants, " x scratch_words ", scratch_words,
                     " must both be >= 1 and fit a control buffer of at most 2^28 words"));
  }
  const size_t log_words = protocol::debug_log::BufferWords(debug_log_records);
  void* log = base::AllocatePages(log_words * sizeof(uint32_t));
  if (log == nullptr) {
    return absl::ResourceExhaustedError("engine: cannot allocate the debug log");
  }
  return std::unique_ptr<ControlBuffers>(new ControlBuffers(
      max_tenants, scratch_words, debug_log_records, static_cast<uint32_t*>(log), log_words));
}

ControlBuffers::ControlBuffers(uint32_t max_tenants, uint32_t scratch_words,
                               uint32_t debug_log_records, uint32_t* debug_log,
                               size_t debug_log_words)
    : words_(ctl::Layout{max_tenants, scratch_words}.TotalWords()),
      view_(*ControlView::Create(absl::MakeSpan(words_), {max_tenants, scratch_words})),
      debug_log_words_(debug_log_words),
      debug_log_records_(debug_log_records),
      debug_log_(debug_log) {
  view_.Initialize();
}

void ControlBuffers::RecordPartitions(const PartitionedRing& ring) {
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    view_.Store(ctl::kPriorityPartitionFirst + p, ring.partition_first(p));
  }
  view_.Store(ctl::kPriorityPartitionFirst + protocol::kPriorityCount, ring.slot_count());
}

protocol::ExecContext ControlBuffers::MakeExecContext() {
  protocol::ExecContext ctx;
  ctx.control = words_.data();
  ctx.layout = view_.layout();
  ctx.debug_log = debug_log_.get();
  ctx.debug_log_records = debug_log_records_;
  return ctx;
}

}  // namespace mk::engine::host
