// ControlBuffers: an engine's control buffer and debug log (docs/protocol.md, "Control buffer"
// and "Debug log") in host memory, and the interpreter context that points at them.
//
// The control buffer holds vyre's 160 header words, the tenant scratch windows and the extended
// tenant-mask table; the host writes the header (partition offsets, masks) and the executors
// add their counters in aggregated steps (ControlCounters). The debug log is whole pages, so an
// executor may register it with a device (the CUDA kernel writes PRINTF records into it).
//
// Thread safety: the words are accessed atomically by everyone (ControlView, atomics.h).
// Lifetime: the buffers live as long as this object; executors and the views point into them.
#ifndef MK_ENGINE_SRC_HOST_CONTROL_BUFFERS_H_
#define MK_ENGINE_SRC_HOST_CONTROL_BUFFERS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "mk/base/page_memory.h"
#include "mk/engine/control_buffer.h"
#include "mk/engine/interpreter.h"

namespace mk::engine::host {

class PartitionedRing;

class ControlBuffers {
 public:
  // INVALID_ARGUMENT for no tenants or scratch, a control buffer past 2^28 words, or a debug log
  // below the protocol's 64 records; RESOURCE_EXHAUSTED without the memory.
  static absl::StatusOr<std::unique_ptr<ControlBuffers>> Create(uint32_t max_tenants,
                                                                uint32_t scratch_words,
                                                                uint32_t debug_log_records);
  ControlBuffers(const ControlBuffers&) = delete;
  ControlBuffers& operator=(const ControlBuffers&) = delete;

  // The control words and their layout (control().words(), control().layout()).
  const ControlView& control() const { return view_; }
  // Control words 129..134: where each of the ring's priority partitions starts, and its end.
  void RecordPartitions(const PartitionedRing& ring);

  absl::Span<const uint32_t> debug_log() const { return {debug_log_.get(), debug_log_words_}; }
  // The debug log's storage: whole pages, so an executor may register it with a device.
  absl::Span<uint32_t> debug_log_storage() { return {debug_log_.get(), debug_log_words_}; }
  uint32_t debug_log_records() const { return debug_log_records_; }

  // What the shared interpreter needs to run a slot against these buffers on the host (the io
  // hook is the executor's to fill in).
  protocol::ExecContext MakeExecContext();

 private:
  ControlBuffers(uint32_t max_tenants, uint32_t scratch_words, uint32_t debug_log_records,
                 uint32_t* debug_log, size_t debug_log_words);

  std::vector<uint32_t> words_;
  ControlView view_;
  const size_t debug_log_words_;
  const uint32_t debug_log_records_;
  base::PagePtr<uint32_t[]> debug_log_;  // page-aligned, zeroed
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_CONTROL_BUFFERS_H_
