// DeviceState: every CUDA resource of one CUDA engine: the stream the persistent kernel runs on,
// the mapped host buffers (doorbell, block idle flags, submission and completion queues), the
// engine's debug log registered as mapped memory, and the device-memory claim counters and
// control copy.
// kernel_abi.h says who reads and writes each buffer.
//
// Lifetime: created with the engine and destroyed after the kernel stopped. After a device
// reset (cudaDeviceReset destroys every resource of the context) the engine Abandon()s it and
// creates a fresh one. Thread safety: Launch, RequestStop, WaitStopped, Abandon and destruction
// are called by the engine's teardown path only (serialized); PublishTail by the dispatcher
// (one at a time); SetPaused, IdleBlocks and KernelState from any thread.
#ifndef MK_ENGINE_SRC_CUDA_DEVICE_STATE_H_
#define MK_ENGINE_SRC_CUDA_DEVICE_STATE_H_

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cuda/kernel_abi.h"
#include "host/control_buffers.h"

namespace mk::engine::cuda {

struct DeviceConfig {
  int device = 0;
  uint32_t blocks = 0;
  uint32_t threads = 0;
  uint32_t shards = 1;       // submission queues (1..kMaxShards), each with its own reaper
  uint64_t sq_capacity = 0;  // entries per shard: a power of two >= ring slots
  uint32_t max_backoff_ns = 0;
  uint32_t scout_warps = 0;  // per block (kernel_abi.h)
};

class DeviceState {
 public:
  // Allocates and registers everything; the kernel is not running yet.
  static absl::StatusOr<std::unique_ptr<DeviceState>> Create(const DeviceConfig& config,
                                                             host::ControlBuffers& control);
  ~DeviceState();
  DeviceState(const DeviceState&) = delete;
  DeviceState& operator=(const DeviceState&) = delete;

  // Starts the kernel with shard s's claim counter at position first_positions[s].
  absl::Status Launch(const uint64_t* first_positions);
  void RequestStop();
  // OK once the kernel has exited; its error if it failed; DEADLINE_EXCEEDED if it still runs.
  absl::Status WaitStopped(absl::Time deadline);
  // OK while the kernel runs; FAILED_PRECONDITION if it exited; its error if it failed.
  absl::Status KernelState();
  // The context was reset: the handles are gone; the destructor must not free them.
  void Abandon() { abandoned_ = true; }

  // Writes SQ entry `position` of `shard` (kernel_abi.h): `ring_index` (the ring slot, with
  // kEntryLastOfDispatch on a dispatch's last entry) and words 1..15 of `slot`, each word
  // tagged with the position (kHeldEntryTag while paused). The dispatcher calls it for
  // entries the kernel may not read yet, then PublishTail.
  // `streaming`: with non-temporal stores, for dispatches of a batch. The entry's two lines are
  // written whole, so they need not be read for ownership first (the device read them last;
  // measured on the lent H100 at batch 1024: 28-37 instead of 41-50 ns per dispatched slot),
  // and they leave the caches to the ring. A dispatch of a few slots keeps ordinary stores:
  // PublishTail's fence would wait for its lines to reach memory on the request's path.
  void WriteEntry(uint32_t shard, uint64_t position, uint32_t ring_index, const uint32_t* slot,
                  bool streaming);
  const uint64_t* completion(uint32_t shard, uint64_t position) const {
    return cq_ + QueueIndex(shard, position) * kCompletionWords;
  }
  // Makes shard `shard`'s entries before `tail` visible to the kernel: a release store of the
  // doorbell, after a store fence when some were `streamed` (written with streaming stores).
  void PublishTail(uint32_t shard, uint64_t tail, bool streamed);
  void SetPaused(bool paused);
  // Where the kernel finds resident resources (from the DeviceResidency); before Launch.
  void set_residency(const ResidencyParams& residency) { params_.residency = residency; }
  uint32_t IdleBlocks() const;

 private:
  // Where entry `position` of `shard` sits in the submission (and completion) queues.
  uint64_t QueueIndex(uint32_t shard, uint64_t position) const {
    return uint64_t{shard} * config_.sq_capacity + (position & (config_.sq_capacity - 1));
  }
  // Writes `flag` (stop or paused) into every shard's doorbell copy.
  void SetFlag(uint32_t ShardDoorbell::*flag, uint32_t value);
  // Page-aligned host memory registered with the device as mapped memory.
  struct HostBuffer {
    uint8_t* data = nullptr;
    bool registered = false;
    void Free();
  };

  DeviceState(const DeviceConfig& config, host::ControlBuffers& control);
  absl::Status Allocate();
  absl::Status RegisterNew(size_t bytes, HostBuffer* out, absl::string_view what);

  const DeviceConfig config_;
  host::ControlBuffers& control_buffers_;
  bool abandoned_ = false;
  cudaStream_t stream_ = nullptr;
  HostBuffer control_page_;             // doorbell, then the block idle flags
  HostBuffer sq_buffer_;                // the submission queues
  HostBuffer cq_buffer_;                // the completion queues
  Doorbell* doorbell_ = nullptr;        // in control_page_
  uint64_t* sq_ = nullptr;              // sq_buffer_
  std::atomic<bool> paused_{false};     // SetPaused: entries are written held
  uint64_t* cq_ = nullptr;              // cq_buffer_
  uint32_t* block_idle_ = nullptr;      // in control_page_
  bool log_registered_ = false;
  unsigned long long* claim_ = nullptr;  // device memory, one counter per shard
  uint32_t* control_ = nullptr;          // device memory
  KernelParams params_{};
};

}  // namespace mk::engine::cuda

#endif  // MK_ENGINE_SRC_CUDA_DEVICE_STATE_H_
