#include "offload/offload_engine.h"

#include <algorithm>
#include <bit>
#include <utility>

#include "absl/strings/str_cat.h"
#include "mk/base/log.h"
#include "mk/base/status_macros.h"

namespace mk::engine::offload {

namespace {
// A stop slower than this is logged: it eats into the stop timeout.
constexpr absl::Duration kSlowStop = absl::Milliseconds(100);
}  // namespace

OffloadEngine::OffloadEngine(host::EngineMemory memory, OffloadConfig config,
                             const EngineOptions& options)
    : EngineBase(std::move(memory), options),
      config_(std::move(config)),
      sq_mask_(config_.queues.sq_capacity - 1) {
  for (uint32_t s = 0; s < config_.queues.shards; ++s) {
    auto shard = std::make_unique<Shard>();
    shard->id = s;
    shard->index.reset(new uint32_t[config_.queues.sq_capacity]);
    shard->batcher.reset(new host::CompletionBatcher(reaper_.NewBatcher()));
    shard->reap_batcher.reset(new host::CompletionBatcher(reaper_.NewBatcher()));
    shard->reaped.reserve(kReapBatch);
    shards_.push_back(std::move(shard));
  }
}

OffloadEngine::~OffloadEngine() {
  ShutdownOnDestroy();
  auto locks = LockAllShards();
  for (const auto& shard : shards_) {
    std::lock_guard<std::mutex> role(shard->reap_mu);
    shard->batcher.reset();  // both flush while the rest of the engine exists
    shard->reap_batcher.reset();
  }
}

OffloadConfig OffloadConfigFor(std::string backend, uint32_t blocks, const EngineOptions& options) {
  OffloadConfig config;
  config.backend = std::move(backend);
  config.queues.blocks = blocks;
  const uint32_t most_shards = std::min(blocks, kMaxShards);
  config.queues.shards = options.cuda.submission_queues != 0
                             ? std::min(options.cuda.submission_queues, most_shards)
                             : most_shards;
  config.queues.sq_capacity = std::bit_ceil(uint64_t{options.ring_slots});
  return config;
}

void OffloadEngine::InstallKernel(std::unique_ptr<KernelPort> kernel) {
  queues_ = kernel != nullptr ? &kernel->queues() : nullptr;
  kernel_ = std::move(kernel);
}

absl::Status OffloadEngine::StartExecutor() {
  {
    std::lock_guard<std::mutex> lock(kernel_mu_);
    if (kernel_ == nullptr) {
      return absl::UnavailableError(
          absl::StrCat(config_.backend,
                       ": the device could not be recovered (a kernel that did not stop, or "
                       "a failed reset); restart megakerneld"));
    }
    auto locks = LockAllShards();
    // Entries before the tails were failed by the teardown (or never existed): start after them.
    uint64_t tails[kMaxShards] = {};
    for (const auto& shard : shards_) tails[shard->id] = shard->tail;
    MK_RETURN_IF_ERROR(kernel_->Launch(tails));
    for (const auto& shard : shards_) {
      shard->head.store(shard->tail, std::memory_order_release);
      shard->published.store(shard->tail, std::memory_order_release);
    }
    kernel_running_.store(true, std::memory_order_release);
  }
  reapers_stop_.store(false, std::memory_order_seq_cst);
  for (const auto& shard : shards_) {
    shard->reaper = std::thread([this, s = shard.get()] { ReaperLoop(*s); });
  }
  Dispatch();  // what was published before Start (or before the restart)
  return absl::OkStatus();
}

std::vector<std::unique_lock<std::mutex>> OffloadEngine::LockAllShards() {
  std::vector<std::unique_lock<std::mutex>> locks;
  for (const auto& shard : shards_) locks.emplace_back(shard->mu);  // always in shard order
  return locks;
}

absl::Status OffloadEngine::StopExecutor() {
  {
    auto locks = LockAllShards();  // waits for dispatches in progress
    kernel_running_.store(false, std::memory_order_release);
  }
  reapers_stop_.store(true, std::memory_order_seq_cst);
  for (const auto& shard : shards_) {
    WakeReaper(*shard);
    if (shard->reaper.joinable()) shard->reaper.join();
  }
  // Waiters helping to reap see kernel_running_ false at their next pass and let go.
  for (const auto& shard : shards_) std::lock_guard<std::mutex> role(shard->reap_mu);
  absl::Status stopped = StopKernel();
  // Nothing reads resident bytes any more; the teardown fails the unreaped CHECKSUMs.
  if (loader_ != nullptr) loader_->ReleaseAllPins();
  return stopped;
}

absl::Status OffloadEngine::StopKernel() {
  std::lock_guard<std::mutex> lock(kernel_mu_);
  if (kernel_ == nullptr) return absl::OkStatus();
  if (!unresponsive_for_testing_.load(std::memory_order_acquire)) queues_->RequestStop();
  const absl::Time asked = absl::Now();
  absl::Status stopped = kernel_->WaitStopped(asked + options_.cuda.stop_timeout);
  if (stopped.ok()) {
    if (const absl::Duration took = absl::Now() - asked; took > kSlowStop) {
      base::LogWarning(config_.backend, ": the kernel took ", absl::FormatDuration(took),
                       " to stop");
    }
    return absl::OkStatus();
  }
  base::LogError(stopped.message());
  if (stopped.code() == absl::StatusCode::kDeadlineExceeded) {
    // The kernel runs but does not stop. On a GPU, cudaDeviceReset (and every call that
    // synchronizes the device: cudaFree, cudaHostUnregister, ...) waits for it forever, so
    // nothing can be reset or freed in this process. Leave the kernel its queues (leaked, so it
    // never reads reused memory) and stop serving: the watchdog reports it unhealthy, and
    // restarting the process ends the kernel with its context.
    queues_ = nullptr;
    AbandonKernel(std::move(kernel_));
    return absl::UnavailableError(
        absl::StrCat(config_.backend,
                     ": the megakernel does not stop and the device cannot be reset while "
                     "it runs; this engine no longer executes slots: restart megakerneld"));
  }
  // A failed kernel (on a GPU a sticky error poisons the context; nothing runs any more). The
  // ring, tickets and completions are host memory and survive; the teardown then fails the
  // in-flight slots.
  queues_ = nullptr;
  return RecoverFailedKernel(std::move(kernel_), stopped);
}

void OffloadEngine::PauseExecutor(bool paused) {
  std::lock_guard<std::mutex> lock(kernel_mu_);
  if (queues_ != nullptr) queues_->SetPaused(paused);
}

uint32_t OffloadEngine::ParkedWorkers() const {
  std::lock_guard<std::mutex> lock(kernel_mu_);
  return queues_ != nullptr && started() ? queues_->IdleBlocks() : 0;
}

EngineInfo OffloadEngine::info() const {
  EngineInfo i;
  i.backend = config_.backend;
  i.device = config_.description;
  i.ring_slots = ring_->slot_count();
  i.workers = config_.queues.blocks;
  i.max_tenants = options_.max_tenants;
  i.scratch_words = options_.scratch_words;
  return i;
}

}  // namespace mk::engine::offload
