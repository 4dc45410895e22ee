// The CUDA engine: one persistent kernel executes the ring's slots for the life of the engine
// (relaunched only by a watchdog restart); no kernel is launched per request.
//
// Division of labour (DESIGN.md floors: every GPU poll of host memory is a ~1.2 us PCIe round
// trip, and per-slot compare-and-swap across PCIe is both slow and not atomic with respect to
// the host without hostNativeAtomicSupported):
// - The host claims. A dispatcher runs the shared ClaimScheduler (priority order, starvation
//   guard, disabled tenants parked, fences held until their batch is terminal) and moves each
//   slot PUBLISHED -> CLAIMED with a host CAS, so cancellation and claiming never race across
//   PCIe. Claimed slots are appended to a submission queue (SQ) in mapped host memory and the
//   doorbell's tail moves (release). A publish of a few slots is dispatched by the publishing
//   thread (a request's latency); a larger one is handed to the next shard's reaper when that
//   one is awake (a sleeping one would take longer to wake than the dispatch takes: the
//   publisher dispatches into its queue, which wakes it for the next), and the reaper
//   dispatches into its own queue while the publisher returns to publishing (measured on the
//   lent H100, one producer: batches of 32 went from 9.2 to 15.9 M slots/s and of 1024 from
//   21 to 38 M, and a gRPC stream's reactor thread no longer writes the entries). A publish of
//   256 slots or more goes to the less loaded of the next two reapers, and when that one still
//   owes the dispatch it was last handed (the reapers are the bottleneck: several producers),
//   the publisher dispatches itself (4 producers of 1024-slot batches, ten runs each: medians
//   of about 51 -> 60 M slots/s).
// - The device executes. The kernel's pollers (warp 0 of each block) read the doorbell and,
//   speculatively in the same round trip, the next self-validating entry (a lone request runs
//   one PCIe round trip after it was written), claim SQ ranges of up to one batch of workers
//   (from a shared-memory claim position when a block is its shard's only poller, the
//   default), run them with the shared interpreter and write each outcome as a tagged
//   completion record (kernel_abi.h: no system-scope fence, the tags tell the host when a
//   record is whole). While a block serves lone requests, its four scout warps probe the next
//   entry on fixed slots of the SM clock, a probe every ~400 ns (measured on the lent H100s:
//   a one-slot round trip of 4.2-4.9 us went to 3.2-4.0, varying from process to process).
// - The host reaps. The SQ is split into shards (up to 8), each with its completion queue and a
//   reaper thread that reads its records in order (host-memory reads, no PCIe), writes the
//   results then DONE / FAULT into the ring slot (the protocol's CLAIMED -> terminal step,
//   release ordering), reaps it, delivers completions, maintains DONE_COUNT / per-opcode /
//   EPOCH counters, releases fences and dispatches what became ready. A reaper spins while its
//   shard has work outstanding, naps when the kernel makes no progress, and parks on a futex
//   when idle. Completions are in dispatch order within a shard; shards reap independently.
// - A WaitFor caller spinning for its completion takes the reaping role of the shard its own
//   thread dispatched into (or handed a publish to) last (HelpWhileWaiting) and reaps there
//   itself: the record it waits for is read, finished and delivered on the thread that wanted
//   it, in lines that thread wrote when it published, instead of crossing to the reaper's
//   core and back (measured on the lent H100: a one-slot round trip of about 6 us went to
//   4-5).
//
// Threads: callers of small publishes and of SetTenantEnabled dispatch, and reapers for larger
// publishes; each dispatch takes one shard's lock (a reaper its own; a caller the first free
// one), so dispatches run in parallel into different shards. Then the reapers and helping
// waiters, one at a time per shard (its reap_mu), and the teardown path (Shutdown / Restart,
// serialized by EngineBase), which holds every shard's lock while it stops or starts the
// kernel, and takes every reap_mu once the reapers have stopped, so no helper touches the
// device while it is stopped or rebuilt.
//
// Resources (LOAD_MISS / CHECKSUM, with --resource_root): resident copies live in device memory
// (DeviceResidency). The kernel answers a LOAD_MISS of a resident resource and runs CHECKSUM
// over the device bytes itself; a LOAD_MISS it does not find resident comes back "ask the
// host", and the reaper hands it to the shared ResourceLoader (load through io_uring and async
// copies, coalescing, REQUEUE, WAIT_IO resumed by the load). The dispatcher pins the resource
// of every CHECKSUM it hands to the kernel and the reaper unpins it, so nothing the kernel
// hashes is evicted under it.
#ifndef MK_ENGINE_SRC_CUDA_CUDA_ENGINE_H_
#define MK_ENGINE_SRC_CUDA_CUDA_ENGINE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "host/engine_base.h"
#include "host/wake_signal.h"

namespace mk::engine::cuda {

class DeviceState;
class DeviceResidency;
struct DeviceConfig;

// OK when a CUDA device this build can run on is present (and names it in `name`);
// UNAVAILABLE with the reason otherwise.
absl::Status ProbeDevice(std::string* name);

class CudaEngine final : public host::EngineBase {
 public:
  static absl::StatusOr<std::unique_ptr<CudaEngine>> Create(const EngineOptions& options);
  ~CudaEngine() override;

  EngineInfo info() const override;

 private:
  CudaEngine(host::EngineMemory memory, std::unique_ptr<DeviceConfig> config,
             std::string device_name, const EngineOptions& options);
  // DeviceState for the current context, told where the resident resources are.
  absl::Status CreateDeviceState();

  absl::Status StartExecutor() override;
  absl::Status StopExecutor() override;
  void OnPublished(size_t slots) override;
  void OnReady() override { WakeReaper(*shards_[0]); }
  uint32_t ParkedWorkers() const override;
  void PauseExecutor(bool paused) override;
  void SimulateUnresponsiveExecutor(bool unresponsive) override {
    unresponsive_for_testing_.store(unresponsive, std::memory_order_release);
  }
  void HelpWhileWaiting(absl::FunctionRef<bool()> arrived, absl::Time until) override;

  // One submission queue, its completion queue, and the reaper thread that owns its head. The
  // fields are grouped by writer, one cache line each, so the spinning reaper does not steal
  // the dispatcher's line on every appended slot.
  struct Shard {
    // The dispatcher's, guarded by `mu`; `id` and `index` are read by the reaper.
    alignas(64) std::mutex mu;
    uint32_t id = 0;
    uint64_t tail = 0;
    std::unique_ptr<uint32_t[]> index;  // ring index of each entry
    host::ControlCounters counters;
    std::unique_ptr<host::CompletionBatcher> batcher;  // cancellations while draining
    std::vector<uint32_t> ready;
    std::vector<uint32_t> claimed;  // one dispatch's claimed slots, in SQ order
    // Written by the dispatcher (and wakers), polled by the reaper.
    alignas(64) std::atomic<uint64_t> published{0};  // the doorbell's tail
    host::WakeSignal wake;                           // the idle reaper sleeps here
    std::atomic<bool> dispatch_wanted{false};  // a larger publish asks this reaper to dispatch
    std::atomic<int64_t> doorbell_ns{0};  // MK_CUDA_PROFILE: when a one-slot dispatch rang
    // The reaper's.
    alignas(64) std::atomic<uint64_t> head{0};  // next entry to reap
    std::thread reaper;
    // The reaping role: held by the reaper thread for each pass, or by a waiter reaping for
    // itself (HelpWhileWaiting). On a line of their own, away from what a pass works with.
    alignas(64) std::mutex reap_mu;
    // Waiters that want the role: the reaper leaves it to them (it retakes it now and then, in
    // case a waiter was preempted before it got there).
    std::atomic<uint32_t> helpers{0};
    // What a reap pass works with; guarded by reap_mu.
    alignas(64) std::unique_ptr<host::CompletionBatcher> reap_batcher;
    host::ControlCounters reap_counters;
    std::vector<uint32_t> reaped;
  };

  // Claims what is claimable (ready list first) and appends it to one free shard's SQ (or to
  // `into`'s, waiting for its lock); rings its doorbell. `small`: a publish of a few slots
  // (which shard it prefers, see the .cc).
  void Dispatch(bool small = false, Shard* into = nullptr);
  // The shard whose reaper a publish of more than a few slots is handed to (OnPublished).
  Shard& ShardForHandoff(bool large);
  // Picks the shard a caller's dispatch goes to and locks it (see the .cc).
  Shard* LockShardFor(bool small, std::unique_lock<std::mutex>* lock);
  // Locks every shard (teardown and start): no dispatch runs meanwhile.
  std::vector<std::unique_lock<std::mutex>> LockAllShards();
  void ReaperLoop(Shard& shard);
  // Reads the completion record of `position` into `out`; false while the kernel has not
  // finished it.
  bool ReadCompletion(const Shard& shard, uint64_t position, protocol::ExecResult* out);
  // Whether the record at the shard's head is complete (a peek, without the reaping role).
  bool RecordReady(const Shard& shard) const;
  // A LOAD_MISS the kernel did not find resident: the loader serves it on the host.
  protocol::ExecResult ServeOnHost(uint32_t index);
  // Most slots one reap pass finishes before it delivers their completions.
  static constexpr size_t kReapBatch = 4096;
  // Reaps terminal slots at the shard's head, in order; returns how many. Needs the shard's
  // reap_mu.
  uint32_t ReapPass(Shard& shard);
  void WakeReaper(Shard& shard);
  // MK_CUDA_PROFILE: prints the averages below: since the start (at destruction), or, with
  // `window`, the one-slot figures since the last window (ProfileReapPass, every 10000).
  void PrintProfile(bool window = false);
  // MK_CUDA_PROFILE: counts a reap pass; times a one-slot pass after a one-slot dispatch.
  void ProfileReapPass(Shard& shard, uint64_t consumed, std::chrono::steady_clock::time_point seen);
  // Stops the kernel. A failed kernel: resets the device and rebuilds the device state. One
  // that runs but does not stop: abandons it (nothing can be reset or freed while it runs) and
  // answers UNAVAILABLE; the engine then executes nothing more.
  absl::Status StopKernel();

  // Owned by loader_ (null without a resource root); rebuilt after a device reset.
  DeviceResidency* residency_ = nullptr;
  const std::unique_ptr<DeviceConfig> config_;
  const std::string device_name_;
  const uint64_t sq_mask_;
  std::vector<std::unique_ptr<Shard>> shards_;

  mutable std::mutex device_mu_;          // guards the device_ pointer (swapped by a reset)
  std::unique_ptr<DeviceState> device_;   // null only after a failed reset

  // Written with every shard locked; dispatchers re-read it under their shard's lock.
  std::atomic<bool> kernel_running_{false};
  std::atomic<uint32_t> next_shard_{0};   // where the next large dispatch starts looking
  std::atomic<uint32_t> small_shard_{0};  // the shard the last small dispatch used

  std::atomic<bool> reapers_stop_{false};
  // SimulateUnresponsiveExecutorForTesting: StopKernel does not ask the kernel to stop.
  std::atomic<bool> unresponsive_for_testing_{false};

  // MK_CUDA_PROFILE=1: time spent dispatching, printed at destruction (performance work).
  const bool profile_;
  // MK_CUDA_INLINE_DISPATCH=1: publishers dispatch every publish themselves (measurements).
  const bool inline_dispatch_ = std::getenv("MK_CUDA_INLINE_DISPATCH") != nullptr;
  std::atomic<uint64_t> dispatch_ns_{0};
  std::atomic<uint64_t> dispatch_calls_{0};
  std::atomic<uint64_t> dispatched_slots_{0};
  std::atomic<uint64_t> single_calls_{0};     // dispatches of exactly one slot
  std::atomic<uint64_t> single_claim_ns_{0};  // ... time claiming + writing the entry
  std::atomic<uint64_t> single_tail_ns_{0};   // ... time publishing the tail + waking
  std::atomic<uint64_t> single_reaps_{0};      // one-slot reap passes after a one-slot dispatch
  std::atomic<uint64_t> single_device_ns_{0};  // ... doorbell -> completion record seen
  std::atomic<uint64_t> single_deliver_ns_{0};  // ... record seen -> completion delivered
  std::atomic<uint64_t> reap_passes_{0};
  std::atomic<uint64_t> reaped_slots_{0};
  std::atomic<uint64_t> reap_ns_{0};  // from a pass's first record read to its end
  // The one-slot totals when the last window was printed.
  struct ProfileWindow {
    uint64_t calls = 0, claim_ns = 0, tail_ns = 0, reaps = 0, device_ns = 0, deliver_ns = 0;
  };
  std::mutex window_mu_;
  ProfileWindow window_;  // guarded by window_mu_
};

}  // namespace mk::engine::cuda

#endif  // MK_ENGINE_SRC_CUDA_CUDA_ENGINE_H_
