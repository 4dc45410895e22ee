// OffloadEngine: the host side of an engine whose executor is a persistent kernel fed through
// submission queues: the CUDA engine (a GPU kernel) and the cuda-emulated engine (host threads
// in the kernel's place, HostThreadKernel). Everything here builds without nvcc; the device
// calls are behind KernelPort.
//
// Division of labour (docs/design.md: every GPU poll of host memory is a ~1.2 us PCIe round
// trip, and per-slot compare-and-swap across PCIe is both slow and not atomic with respect to
// the host without hostNativeAtomicSupported):
// - The host claims. A dispatcher runs the shared ClaimScheduler (priority order, starvation
//   guard, disabled tenants parked, fences held until their batch is terminal) and moves each
//   slot PUBLISHED -> CLAIMED with a host compare-and-swap, so cancellation and claiming never
//   race across PCIe. Claimed slots are appended to a submission queue (SQ) and the shard's
//   doorbell moves (release). A publish of a few slots is dispatched by the publishing thread
//   (a request's latency); a larger one is handed to the next shard's reaper when that one is
//   awake (a sleeping one would take longer to wake than the dispatch takes: the publisher
//   dispatches into its queue, which wakes it for the next), and the reaper dispatches into its
//   own queue while the publisher returns to publishing. A publish of 256 slots or more goes to
//   the less loaded of the next two reapers, and when that one still owes the dispatch it was
//   last handed (the reapers are the bottleneck: several producers), the publisher dispatches
//   itself. (docs/performance.md has the measurements behind each rule.)
// - The kernel executes (megakernel.cu on a GPU): it claims SQ ranges, runs them with the
//   shared interpreter and writes each outcome as a tagged completion record (kernel_abi.h:
//   no system-scope fence; the tags tell the host when a record is whole).
// - The host reaps. The SQ is split into shards (up to 8), each with its completion queue and a
//   reaper thread that reads its records in order (host-memory reads, no PCIe), writes the
//   outcome into the ring slot (the ring's one outcome writer), reaps it, delivers completions,
//   maintains DONE_COUNT / per-opcode / EPOCH counters, releases fences and dispatches what
//   became ready. A reaper spins while its shard has work outstanding, naps when the kernel
//   makes no progress, and parks on a futex when idle. Completions are in dispatch order within
//   a shard; shards reap independently.
// - A WaitFor caller spinning for its completion takes the reaping role of the shard its own
//   thread dispatched into (or handed a publish to) last (HelpWhileWaiting) and reaps there
//   itself: the record it waits for is read, finished and delivered on the thread that wanted
//   it, in lines that thread wrote when it published.
//
// Threads: callers of small publishes and of SetTenantEnabled dispatch, and reapers for larger
// publishes; each dispatch takes one shard's lock (a reaper its own; a caller the first free
// one), so dispatches run in parallel into different shards. Then the reapers and helping
// waiters, one at a time per shard (its reap_mu), and the teardown path (Shutdown / Restart,
// serialized by EngineBase), which holds every shard's lock while it stops or starts the
// kernel, and takes every reap_mu once the reapers have stopped, so no helper touches the
// queues while the kernel is stopped or replaced.
//
// Resources (LOAD_MISS / CHECKSUM): a LOAD_MISS the kernel does not find resident comes back
// "ask the host" (kAskHostStatus), and the reaper hands it to the shared ResourceLoader. The
// dispatcher pins the resource of every CHECKSUM it hands to the kernel and the reaper unpins
// it, so nothing the kernel hashes is evicted under it.
#ifndef MK_ENGINE_SRC_OFFLOAD_OFFLOAD_ENGINE_H_
#define MK_ENGINE_SRC_OFFLOAD_OFFLOAD_ENGINE_H_

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
#include "offload/dispatch_profile.h"
#include "offload/kernel_port.h"

namespace mk::engine::offload {

// How the host side is shaped; fixed for the engine's life.
struct OffloadConfig {
  std::string backend;      // EngineInfo::backend: "cuda" or "cuda-emulated"
  std::string description;  // EngineInfo::device
  QueueShape queues;        // blocks: EngineInfo::workers; shards = submission queues = reapers
};
// The shape for `blocks` kernel blocks: options.cuda.submission_queues shards (0: one per
// block), at most one per block and kMaxShards; each queue as large as the ring (rounded up to a
// power of two). The description is the caller's.
OffloadConfig OffloadConfigFor(std::string backend, uint32_t blocks, const EngineOptions& options);

class OffloadEngine : public host::EngineBase {
 public:
  ~OffloadEngine() override;
  EngineInfo info() const override;

 protected:
  OffloadEngine(host::EngineMemory memory, OffloadConfig config, const EngineOptions& options);
  // Gives the engine its kernel (at Create, and from RecoverFailedKernel). No kernel may run.
  void InstallKernel(std::unique_ptr<KernelPort> kernel);
  // A kernel failed (its error is `failure`; it runs no more) and is handed over: make a fresh
  // one (InstallKernel) and return OK, or return why that is impossible. The default recovers
  // nothing and keeps the failed kernel installed.
  virtual absl::Status RecoverFailedKernel(std::unique_ptr<KernelPort> failed,
                                           const absl::Status& failure) {
    InstallKernel(std::move(failed));
    return failure;
  }
  // The kernel runs on but cannot be stopped: the engine gives it up (it executes nothing from
  // now on) and hands it here. The default leaks it with its queues, so nothing it may still
  // read is freed (a GPU kernel that ignores its stop flag cannot be waited for or freed in
  // this process). An override that can end the kernel for certain may do so and free it.
  virtual void AbandonKernel(std::unique_ptr<KernelPort> kernel) { (void)kernel.release(); }
  const OffloadConfig& config() const { return config_; }

 private:
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

  // EngineBase's executor hooks.
  absl::Status StartExecutor() override;
  absl::Status StopExecutor() override;
  void OnPublished(size_t slots) override;
  void OnReady() override { WakeReaper(*shards_[0]); }
  uint32_t ParkedWorkers() const override;
  void HelpWhileWaiting(absl::FunctionRef<bool()> arrived, absl::Time until) override;
  void PauseExecutor(bool paused) override;
  void SimulateUnresponsiveExecutor(bool unresponsive) override {
    unresponsive_for_testing_.store(unresponsive, std::memory_order_release);
  }

  // ---- Dispatch (offload_dispatch.cc) ----
  // Claims what is claimable (ready list first) and appends it to one free shard's SQ (or to
  // `into`'s, waiting for its lock); rings its doorbell. `small`: a publish of a few slots
  // (which shard it prefers, see the .cc).
  void Dispatch(bool small = false, Shard* into = nullptr);
  // Claims into shard.claimed, writes the entries, rings the doorbell; the shard's lock held.
  void DispatchLocked(Shard& shard);
  // The shard whose reaper a publish of more than a few slots is handed to (OnPublished).
  Shard& ShardForHandoff(bool large);
  // Picks the shard a caller's dispatch goes to and locks it (see the .cc).
  Shard* LockShardFor(bool small, std::unique_lock<std::mutex>* lock);
  // Locks every shard (teardown and start): no dispatch runs meanwhile.
  std::vector<std::unique_lock<std::mutex>> LockAllShards();
  // The engine and shard this thread dispatched into (or handed a publish to) last: where its
  // WaitFor helps reap.
  struct LastDispatch {
    const OffloadEngine* engine = nullptr;
    uint32_t shard = 0;
  };
  static thread_local LastDispatch last_dispatch_;

  // ---- Reaping (offload_reaper.cc) ----
  // What one reaper thread remembers between polls.
  struct ReaperState {
    std::chrono::steady_clock::time_point last_progress, last_health;
    bool reported_failure = false;
    uint32_t polls = 0;         // polls in a row that found nothing
    uint32_t helped_polls = 0;  // polls that left the reaping to a waiter
  };
  void ReaperLoop(Shard& shard);
  // One poll: a handed dispatch, a reap pass, ready slots. True when it did work (or left it to
  // a waiter that reaps).
  bool ReaperPoll(Shard& shard, ReaperState* state);
  // Every 64th empty poll: nap while the kernel owes completions and makes no progress, park
  // once idle for longer than idle_spin.
  void ReaperPause(Shard& shard, ReaperState* state);
  // Parks an idle reaper until a dispatch, a handed publish or (shard 0) a ready slot.
  void SleepUntilWork(Shard& shard);
  // Reads the completion record of `position` into `out`; false while the kernel has not
  // finished it.
  bool ReadCompletion(const Shard& shard, uint64_t position, protocol::ExecResult* out);
  // Whether the record at the shard's head is complete (a peek, without the reaping role).
  bool RecordReady(const Shard& shard) const;
  // A LOAD_MISS the kernel did not find resident: the loader serves it on the host.
  protocol::ExecResult ServeOnHost(uint32_t index);
  // Finishes one read record of the ring slot `index`: host-served LOAD_MISS, CHECKSUM pins,
  // the outcome. True when the slot is terminal (to be reaped).
  bool FinishRecord(uint32_t index, protocol::ExecResult& r, host::ControlCounters& counters,
                    uint32_t* epochs);
  // Most slots one reap pass finishes before it delivers their completions.
  static constexpr size_t kReapBatch = 4096;
  // Reaps terminal slots at the shard's head, in order; returns how many. Needs the shard's
  // reap_mu.
  uint32_t ReapPass(Shard& shard);
  void WakeReaper(Shard& shard) { shard.wake.Wake(/*all=*/false); }
  // A reaper waiting on the kernel checks now and then that it still runs; logs a failure once.
  void CheckKernelHealth(const Shard& shard, bool* reported_failure);

  // ---- Teardown (offload_engine.cc) ----
  // Stops the kernel. A failed kernel: RecoverFailedKernel. One that runs but does not stop:
  // abandons it (AbandonKernel) and answers UNAVAILABLE; the engine then executes nothing.
  absl::Status StopKernel();

  const OffloadConfig config_;
  const uint64_t sq_mask_;
  std::vector<std::unique_ptr<Shard>> shards_;

  mutable std::mutex kernel_mu_;        // guards kernel_ (replaced by recovery)
  std::unique_ptr<KernelPort> kernel_;  // null only after an abandoned or failed recovery
  // The kernel's queues, for the hot paths. Changed only with every shard locked, the reapers
  // stopped and kernel_running_ false (InstallKernel), like kernel_.
  SubmissionQueues* queues_ = nullptr;

  // Written with every shard locked; dispatchers re-read it under their shard's lock.
  std::atomic<bool> kernel_running_{false};
  std::atomic<uint32_t> next_shard_{0};   // where the next large dispatch starts looking
  std::atomic<uint32_t> small_shard_{0};  // the shard the last small dispatch used

  std::atomic<bool> reapers_stop_{false};
  // SimulateUnresponsiveExecutor: StopKernel does not ask the kernel to stop.
  std::atomic<bool> unresponsive_for_testing_{false};

  DispatchProfile profile_;  // empty unless built with MK_ENABLE_PROFILING
};

}  // namespace mk::engine::offload

#endif  // MK_ENGINE_SRC_OFFLOAD_OFFLOAD_ENGINE_H_
