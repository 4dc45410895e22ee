// The executors a user would pick instead of a resident engine, for the CUDA benchmark to
// measure in the same process and run as the engine (docs/performance.md): an empty kernel
// launch + synchronize per request, a CUDA graph launch + synchronize per request, and a
// launch-per-batch executor (copy the slots in, launch the shared interpreter over them, copy
// the results out). CUDA-free header; the implementation is launch_baselines.cu.
//
// Not thread-safe: one benchmark thread drives it.
#ifndef MK_TESTS_BENCH_CUDA_BASELINES_LAUNCH_BASELINES_H_
#define MK_TESTS_BENCH_CUDA_BASELINES_LAUNCH_BASELINES_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace mk::bench {

class LaunchBaselines {
 public:
  // Buffers for batches of up to `max_batch` NOP slots.
  static absl::StatusOr<std::unique_ptr<LaunchBaselines>> Create(uint32_t max_batch);
  ~LaunchBaselines();

  // Each returns the wall time of one operation in microseconds.
  absl::StatusOr<double> EmptyLaunchSync();
  absl::StatusOr<double> GraphLaunchSync();
  // Copies `batch` slots in, runs them, copies them back, synchronizes; checks they are DONE.
  absl::StatusOr<double> LaunchPerBatch(uint32_t batch);
  // The physics under any resident design on this machine (docs/design.md's measured floors): a
  // spinning warp watches a flag in mapped host memory and echoes it back, optionally reading a
  // 64-byte slot after seeing the flag. Launches the warp, measures `n` round trips (microseconds
  // each) and stops it.
  enum class SlotRead {
    kNone,       // the flag only
    kOneThread,  // one thread loads the slot's four 16-byte chunks
    kCoalesced,  // four lanes load one chunk each: one 64-byte request
  };
  absl::StatusOr<std::vector<double>> MappedFlagRoundTrips(int n, SlotRead read);

  // Host CPU cost of touching memory the GPU can map, per 64-byte line, over 64 MiB (more
  // than the caches, so write-backs count): ordinary stores, non-temporal stores, then reads;
  // for malloc memory, the same after cudaHostRegister, cudaHostAlloc, and cudaHostAlloc
  // write-combined. Virtualized GPU runtimes may map some of these differently.
  struct HostAccess {
    const char* kind;
    double write_ns_per_line;
    double stream_ns_per_line;
    double read_ns_per_line;
  };
  absl::StatusOr<std::vector<HostAccess>> ProbeHostAccess();

 private:
  struct Impl;
  explicit LaunchBaselines(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Host-to-device copy bandwidth (bytes per second) from pinned host memory, the ceiling of any
// file -> device-memory path: `repeats` copies of `bytes` on one stream after a warm-up copy.
absl::StatusOr<double> PinnedHostToDeviceBandwidth(size_t bytes, int repeats);

// Latency of one small copy from pinned host memory to the device on its own stream, waited for
// by polling an event: what a small resource load pays for its copy. Create and destroy it
// while no persistent kernel runs (allocation and release synchronize the device); Measure may
// run while one does.
class CopyLatencyProbe {
 public:
  static absl::StatusOr<std::unique_ptr<CopyLatencyProbe>> Create(size_t bytes);
  ~CopyLatencyProbe();
  // p50 over `repeats` copies, in microseconds.
  absl::StatusOr<double> Measure(int repeats);

 private:
  CopyLatencyProbe() = default;
  size_t bytes_ = 0;
  void* host_ = nullptr;
  void* device_ = nullptr;
  void* stream_ = nullptr;  // cudaStream_t (this header is CUDA-free)
  void* event_ = nullptr;   // cudaEvent_t
};

}  // namespace mk::bench

#endif  // MK_TESTS_BENCH_CUDA_BASELINES_LAUNCH_BASELINES_H_
