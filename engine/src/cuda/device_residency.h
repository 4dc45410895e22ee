// DeviceResidency: the CUDA engine's ResidencyStore. Resident resources live in one device
// memory arena of the residency budget, allocated before the kernel starts (cudaMalloc and
// cudaFree synchronize the device, which never goes idle while the persistent kernel runs);
// rooms in it come from a first-fit allocator on the host. Loads stream file chunks from the
// io reader's staging buffers, registered with CUDA once at Create, to the arena with
// cudaMemcpyAsync on a copy stream of their own, so reads of later chunks overlap copies of
// earlier ones and the kernel keeps running. An event follows each copy; the copy watcher
// thread polls the oldest one while copies are outstanding (sleeping otherwise) and hands the
// staging buffer back to the reader the moment its copy finished (a host function on the stream
// instead was far slower). A published resource gets an entry in the residency table the
// kernel reads (kernel_abi.h). With the persistent kernel running, copy-engine copies are fast
// or several times slower depending on the process (a mode fixed per process, not understood);
// docs/performance.md has the measurements.
//
// Thread safety: as ResidencyStore (Place / Publish / Remove under the loader's lock); `mu_`
// guards the placements against Fill and the watcher; `watch_mu_` the copies in flight. Lifetime:
// owned by the ResourceLoader, destroyed after the kernel stopped and before the reader (whose
// staging it registered). After a device reset the engine calls Rebuild.
#ifndef MK_ENGINE_SRC_CUDA_DEVICE_RESIDENCY_H_
#define MK_ENGINE_SRC_CUDA_DEVICE_RESIDENCY_H_

#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "host/residency_store.h"
#include "offload/dispatch_profile.h"
#include "offload/kernel_abi.h"

namespace mk::engine::cuda {

class DeviceResidency final : public host::ResidencyStore {
 public:
  // The arena holds `budget_bytes`; CHECKSUM's leaf scratch serves `blocks` kernel blocks.
  // Call before the kernel starts.
  static absl::StatusOr<std::unique_ptr<DeviceResidency>> Create(uint64_t budget_bytes,
                                                                 uint32_t blocks,
                                                                 io::FileReader& reader);
  ~DeviceResidency() override;

  // What the kernel reads (KernelParams::residency).
  const offload::ResidencyParams& params() const { return params_; }
  // The device was reset (every allocation and registration is gone) and nothing is placed:
  // allocates everything again. No kernel may run.
  absl::Status Rebuild();
  // A kernel that cannot be stopped still runs: from now on nothing is freed through CUDA (it
  // would wait for that kernel forever); the device resources are left to the process's end.
  void Abandon();

  bool Place(uint32_t id, uint32_t tenant, uint64_t length) override;
  std::optional<uint32_t> Obstacle(uint32_t id) override;
  absl::Status Fill(uint32_t id, const io::Resource& resource, io::FileReader& reader,
                    io::ReadCallback done) override;
  absl::Status Publish(uint32_t id) override;
  void Remove(uint32_t id) override;
  absl::Span<const uint8_t> HostBytes(uint32_t) override { return {}; }

 private:
  struct Placement {
    uint64_t offset;  // in the arena
    uint64_t length;
    uint32_t tenant;
    bool copy_failed = false;  // a chunk's copy failed: Publish fails the load
  };
  // A chunk copy queued on the copy stream, followed by `event`.
  struct Copy {
    uint32_t id;
    cudaEvent_t event;
    std::function<void()> release;
  };

  // Queues one chunk's copy and its event; the watcher releases the chunk afterwards.
  absl::Status CopyChunk(uint32_t id, uint8_t* to, const io::Chunk& chunk,
                         std::function<void()> release);
  void WatchLoop();
  void StopWatcher();

  DeviceResidency(uint64_t budget_bytes, uint32_t blocks, io::FileReader& reader);
  absl::Status Allocate();
  void ReleaseDeviceResources();
  offload::ResidencyEntry& EntryOf(uint32_t id) { return table_[id & params_.table_mask]; }
  // First fit in the free list; false when no free range is large enough. mu_ held.
  bool AllocateRange(uint64_t bytes, uint64_t* offset);
  void FreeRange(uint64_t offset, uint64_t bytes);

  const uint64_t budget_bytes_;
  const uint32_t blocks_;
  uint8_t* const staging_;  // the reader's; registered here
  const size_t staging_bytes_;
  offload::ResidencyEntry* table_ = nullptr;  // host memory, registered mapped; owned
  size_t table_bytes_ = 0;
  std::atomic<bool> abandoned_{false};
  bool staging_registered_ = false;
  bool table_registered_ = false;
  cudaStream_t copy_stream_ = nullptr;
  uint8_t* arena_ = nullptr;  // device memory
  offload::ResidencyParams params_;

  std::mutex mu_;  // guards placements_ and free_
  std::map<uint32_t, Placement> placements_;
  std::map<uint64_t, uint64_t> free_;  // arena offset -> bytes, coalesced
  std::vector<uint32_t> owner_;        // per table entry: placed resource id + 1, or 0

  std::mutex watch_mu_;               // guards the fields below
  std::condition_variable watch_cv_;  // a copy was queued, or stop
  std::deque<Copy> copies_;           // in stream order, so they finish in this order
  std::vector<cudaEvent_t> events_;   // idle events for later copies
  bool watch_stop_ = false;
  std::thread watcher_;  // runs WatchLoop while the device resources exist

  // Inline chunk copies: time to issue, time to complete; logged at destruction. Only in builds
  // with MK_ENABLE_PROFILING (offload/dispatch_profile.h); otherwise empty and never timed.
  using Time = offload::ProfileClock::Time;
#if MK_PROFILING
  class CopyProfile {
   public:
    void Record(Time issued, Time queued, Time done);
    ~CopyProfile();

   private:
    std::atomic<uint64_t> copies_{0}, issue_ns_{0}, await_ns_{0};
  };
#else
  class CopyProfile {
   public:
    void Record(Time, Time, Time) {}
  };
#endif
  CopyProfile profile_;
};

}  // namespace mk::engine::cuda

#endif  // MK_ENGINE_SRC_CUDA_DEVICE_RESIDENCY_H_
