#include "cuda/cuda_engine.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cuda/cuda_status.h"
#include "cuda/device_residency.h"
#include "cuda/device_state.h"
#include "cuda/megakernel.h"
#include "mk/base/status_macros.h"

namespace mk::engine::cuda {

namespace {

constexpr int kDevice = 0;
constexpr uint32_t kDefaultBlocks = 8;  // few pollers: DESIGN.md floors, 1-8 blocks
// Submission queues, each with a reaper thread. As many as blocks (up to kMaxShards): a block
// that is its shard's only poller claims without a device-memory atomic (from shared memory),
// and on the lent H100 that took a one-slot round trip's device time from 5.0 to 3.7 us against
// two blocks sharing each of 4 shards through a device-memory compare-and-swap, at the same NOP
// throughput.
constexpr uint32_t kDefaultShards = kMaxShards;
// An idle poller's longest nap. Measured on the lent H100 (io_bench's copy probe): a 64 KiB
// copy-engine copy takes 9-10 us while the kernel runs in some processes and 17-18 us in others
// (then a LOAD_MISS round trip is 41-46 us instead of 33-35). At 250 ns 6 of 8 processes were
// fast, at 1000 ns 1 of 4; 128 and 500 ns were slow once each. The mode is not understood; 250
// is kept as the better of what was measured. The idle kernel's reads cost no host CPU: eight
// pollers each read a 16-byte doorbell and a 128-byte entry about every 1.5 us (~0.8 GB/s of
// PCIe reads).
constexpr uint32_t kMaxBackoffNs = 250;
// The MK_CUDA_* knobs for measurements (README): the number in environment variable `name`,
// or `otherwise` when it is not set.
int64_t EnvNumber(const char* name, int64_t otherwise) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::strtoll(value, nullptr, 10) : otherwise;
}
// How long a kernel asked to stop may take before it counts as unresponsive (it takes
// microseconds). MK_CUDA_STOP_TIMEOUT_MS overrides it: under compute-sanitizer the kernel runs
// many times slower (deploy/gpu/device_suite.sh gives it longer).
absl::Duration StopTimeout() {
  static const absl::Duration timeout =
      absl::Milliseconds(EnvNumber("MK_CUDA_STOP_TIMEOUT_MS", 2000));
  return timeout;
}
// A stop slower than this is logged (stderr): it eats into the timeout above.
constexpr absl::Duration kSlowStop = absl::Milliseconds(100);

}  // namespace

absl::Status ProbeDevice(std::string* name) {
  // A persistent kernel and lazy module loading deadlock: loading a module while the kernel runs
  // waits for the context to go idle, which it never does. Load every module at first use of
  // CUDA instead (unless the operator chose otherwise). This runs before the first CUDA call.
  setenv("CUDA_MODULE_LOADING", "EAGER", /*overwrite=*/0);
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    return CudaStatus(e, "looking for a CUDA device", "run --engine=cpu on machines without a GPU");
  }
  if (count == 0) {
    return absl::UnavailableError("cuda: no CUDA device is present; run --engine=cpu");
  }
  cudaDeviceProp prop;
  MK_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, kDevice), "reading device properties");
  if (prop.major < 9 || !prop.canMapHostMemory || !prop.unifiedAddressing) {
    return absl::UnavailableError(
        absl::StrCat("cuda: device 0 (", prop.name, ", sm_", prop.major, prop.minor,
                     ") cannot run this build (needs sm_90 or newer with mapped host memory); run "
                     "--engine=cpu"));
  }
  if (name != nullptr) {
    *name = absl::StrCat(prop.name, " (sm_", prop.major, prop.minor, ", ", prop.multiProcessorCount,
                         " SMs)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CudaEngine>> CudaEngine::Create(const EngineOptions& options) {
  if (options.claim_batch == 0 || options.claim_batch > kMaxThreadsPerBlock) {
    return absl::InvalidArgumentError(absl::StrCat("engine: claim_batch ", options.claim_batch,
                                                   " out of range; use 1..1024 (the most a "
                                                   "CUDA engine block claims at once)"));
  }
  std::string device_name;
  MK_RETURN_IF_ERROR(ProbeDevice(&device_name));
  MK_CUDA_RETURN_IF_ERROR(cudaSetDevice(kDevice), "cudaSetDevice");
  auto config = std::make_unique<DeviceConfig>();
  config->device = kDevice;
  // Workers enough for one claim batch (whole warps), plus the scouts, within one block.
  config->threads = std::min<uint32_t>((options.claim_batch + 31) / 32 * 32 + 32 * kScoutWarps,
                                       kMaxThreadsPerBlock);
  int per_sm = 0;
  MK_CUDA_RETURN_IF_ERROR(
      MegakernelBlocksPerMultiprocessor(static_cast<int>(config->threads), &per_sm),
      "sizing the megakernel");
  int sms = 0;
  MK_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, kDevice),
                          "reading the multiprocessor count");
  const uint32_t co_resident = static_cast<uint32_t>(per_sm * sms);
  const uint32_t wanted = options.workers != 0 ? options.workers : kDefaultBlocks;
  if (co_resident == 0 || wanted > co_resident) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: ", wanted, " blocks of ", config->threads, " threads requested but only ",
        co_resident, " can be resident at once on ", device_name,
        "; a persistent kernel needs every block resident: lower --workers"));
  }
  config->blocks = wanted;
  // MK_CUDA_SHARDS: submission queues (and reaper threads), for measurements.
  config->shards = static_cast<uint32_t>(std::clamp<int64_t>(
      EnvNumber("MK_CUDA_SHARDS", kDefaultShards), 1, std::min(wanted, kMaxShards)));
  config->sq_capacity = std::bit_ceil(uint64_t{options.ring_slots});
  // MK_CUDA_SCOUTS=0: no scout warps (every thread a worker), for measurements.
  config->scout_warps = EnvNumber("MK_CUDA_SCOUTS", 1) == 0 ? 0 : ScoutWarps(config->threads);
  // MK_CUDA_MAX_BACKOFF_NS: an idle poller's longest nap, for measurements (like
  // MK_CUDA_PROFILE); the default keeps the idle kernel's PCIe reads low.
  config->max_backoff_ns =
      static_cast<uint32_t>(EnvNumber("MK_CUDA_MAX_BACKOFF_NS", kMaxBackoffNs));
  MK_ASSIGN_OR_RETURN(host::EngineMemory memory, host::EngineMemory::Allocate(options));
  std::unique_ptr<CudaEngine> engine(
      new CudaEngine(std::move(memory), std::move(config), device_name, options));
  const uint32_t blocks = engine->config_->blocks;
  MK_RETURN_IF_ERROR(engine->CreateLoader(
      [&](io::FileReader& reader) -> absl::StatusOr<std::unique_ptr<host::ResidencyStore>> {
        auto store = DeviceResidency::Create(options.residency_budget_bytes, blocks, reader);
        if (!store.ok()) return store.status();
        engine->residency_ = store->get();
        return std::unique_ptr<host::ResidencyStore>(*std::move(store));
      }));
  MK_RETURN_IF_ERROR(engine->CreateDeviceState());
  return engine;
}

absl::Status CudaEngine::CreateDeviceState() {
  auto device = DeviceState::Create(*config_, *control_);
  if (!device.ok()) return device.status();
  if (residency_ != nullptr) (*device)->set_residency(residency_->params());
  device_ = *std::move(device);
  return absl::OkStatus();
}

CudaEngine::CudaEngine(host::EngineMemory memory, std::unique_ptr<DeviceConfig> config,
                       std::string device_name, const EngineOptions& options)
    : EngineBase(std::move(memory), options),
      config_(std::move(config)),
      device_name_(std::move(device_name)),
      sq_mask_(config_->sq_capacity - 1),
      profile_(std::getenv("MK_CUDA_PROFILE") != nullptr) {
  for (uint32_t s = 0; s < config_->shards; ++s) {
    auto shard = std::make_unique<Shard>();
    shard->id = s;
    shard->index.reset(new uint32_t[config_->sq_capacity]);
    shard->batcher.reset(new host::CompletionBatcher(reaper_.NewBatcher()));
    shard->reap_batcher.reset(new host::CompletionBatcher(reaper_.NewBatcher()));
    shard->reaped.reserve(kReapBatch);
    shards_.push_back(std::move(shard));
  }
}

CudaEngine::~CudaEngine() {
  ShutdownOnDestroy();
  if (profile_) PrintProfile();
  auto locks = LockAllShards();
  for (const auto& shard : shards_) {
    std::lock_guard<std::mutex> role(shard->reap_mu);
    shard->batcher.reset();  // both flush while the host exists
    shard->reap_batcher.reset();
  }
}

void CudaEngine::PrintProfile(bool window) {
  const ProfileWindow now{single_calls_.load(),     single_claim_ns_.load(),
                          single_tail_ns_.load(),   single_reaps_.load(),
                          single_device_ns_.load(), single_deliver_ns_.load()};
  ProfileWindow since;  // zero: since the start
  if (window) {
    std::lock_guard<std::mutex> lock(window_mu_);
    since = std::exchange(window_, now);
  }
  // (total - since) / count (0 when nothing was counted), scaled.
  auto mean = [](uint64_t total, uint64_t count, double scale) {
    return total / std::max(1.0, double(count)) * scale;
  };
  const uint64_t calls = now.calls - since.calls;
  const uint64_t reaps = now.reaps - since.reaps;
  if (!window) {
    std::fprintf(stderr,
                 "cuda profile: %llu dispatches, %.3f us each, %.1f ns per dispatched slot; "
                 "%llu reap passes, %.1f slots each, %.1f ns per reaped slot\n",
                 static_cast<unsigned long long>(dispatch_calls_.load()),
                 mean(dispatch_ns_.load(), dispatch_calls_.load(), 1e-3),
                 mean(dispatch_ns_.load(), dispatched_slots_.load(), 1),
                 static_cast<unsigned long long>(reap_passes_.load()),
                 mean(reaped_slots_.load(), reap_passes_.load(), 1),
                 mean(reap_ns_.load(), reaped_slots_.load(), 1));
  }
  std::fprintf(stderr,
               "cuda profile%s: %llu one-slot dispatches: claim+entry %.3f us, tail+wake %.3f us; "
               "%llu one-slot reaps under 30 us: doorbell -> record seen %.3f us, "
               "seen -> delivered %.3f us\n",
               window ? " (window)" : "", static_cast<unsigned long long>(calls),
               mean(now.claim_ns - since.claim_ns, calls, 1e-3),
               mean(now.tail_ns - since.tail_ns, calls, 1e-3),
               static_cast<unsigned long long>(reaps),
               mean(now.device_ns - since.device_ns, reaps, 1e-3),
               mean(now.deliver_ns - since.deliver_ns, reaps, 1e-3));
}

absl::Status CudaEngine::StartExecutor() {
  {
    std::lock_guard<std::mutex> lock(device_mu_);
    if (device_ == nullptr) {
      return absl::UnavailableError(
          "cuda: the device could not be recovered (a kernel that did not stop, or a failed "
          "reset); restart megakerneld");
    }
    auto locks = LockAllShards();
    // Entries before the tails were failed by the teardown (or never existed): start after them.
    uint64_t tails[kMaxShards] = {};
    for (const auto& shard : shards_) tails[shard->id] = shard->tail;
    MK_RETURN_IF_ERROR(device_->Launch(tails));
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

std::vector<std::unique_lock<std::mutex>> CudaEngine::LockAllShards() {
  std::vector<std::unique_lock<std::mutex>> locks;
  for (const auto& shard : shards_) locks.emplace_back(shard->mu);  // always in shard order
  return locks;
}

absl::Status CudaEngine::StopExecutor() {
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

absl::Status CudaEngine::StopKernel() {
  std::lock_guard<std::mutex> lock(device_mu_);
  if (device_ == nullptr) return absl::OkStatus();
  if (!unresponsive_for_testing_.load(std::memory_order_acquire)) device_->RequestStop();
  const absl::Time asked = absl::Now();
  absl::Status stopped = device_->WaitStopped(asked + StopTimeout());
  if (stopped.ok()) {
    if (const absl::Duration took = absl::Now() - asked; took > kSlowStop) {
      std::fprintf(stderr, "cuda: the megakernel took %.0f ms to stop\n",
                   absl::ToDoubleMilliseconds(took));
    }
    return absl::OkStatus();
  }
  if (stopped.code() == absl::StatusCode::kDeadlineExceeded) {
    // The kernel runs but does not stop. cudaDeviceReset (and every call that synchronizes
    // the device: cudaFree, cudaHostUnregister, ...) waits for it forever (measured on the
    // lent H200), so nothing can be reset or freed in this process. Leave the kernel its
    // buffers (leaked, so it never reads reused memory) and stop serving: the watchdog reports
    // it unhealthy, and restarting the process ends the kernel with its context.
    std::fprintf(stderr, "%s\n", stopped.ToString().c_str());
    if (residency_ != nullptr) residency_->Abandon();
    (void)device_.release();
    return absl::UnavailableError(
        "cuda: the megakernel does not stop and the device cannot be reset while it runs; "
        "this engine no longer executes slots: restart megakerneld");
  }
  // A failed kernel (a sticky error poisons the context; nothing runs any more): tear the
  // context down and rebuild every device resource. The ring, tickets and completions are host
  // memory and survive; the teardown then fails the in-flight slots.
  std::fprintf(stderr, "%s\n", stopped.ToString().c_str());
  if (loader_ != nullptr) {
    std::fprintf(stderr, "cuda: recovery: letting resource loads in flight finish\n");
    // The reset takes the resident copies with it: let loads in flight land first (copies do
    // not need the kernel), then forget every resident resource.
    if (absl::Status s = loader_->ForgetResidents(absl::Now() + StopTimeout()); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
    }
  }
  device_->Abandon();
  device_.reset();
  std::fprintf(stderr, "cuda: recovery: resetting the device\n");
  if (cudaError_t e = cudaDeviceReset(); e != cudaSuccess) {
    return CudaStatus(e, "resetting the device after a failed kernel", "restart megakerneld");
  }
  std::fprintf(stderr, "cuda: recovery: device reset; rebuilding its resources\n");
  if (residency_ != nullptr) MK_RETURN_IF_ERROR(residency_->Rebuild());
  MK_RETURN_IF_ERROR(CreateDeviceState());
  std::fprintf(stderr, "cuda: recovery: rebuilt; the kernel is launched again\n");
  return absl::OkStatus();
}

void CudaEngine::PauseExecutor(bool paused) {
  std::lock_guard<std::mutex> lock(device_mu_);
  if (device_ != nullptr) device_->SetPaused(paused);
}

uint32_t CudaEngine::ParkedWorkers() const {
  std::lock_guard<std::mutex> lock(device_mu_);
  return device_ != nullptr && started() ? device_->IdleBlocks() : 0;
}

EngineInfo CudaEngine::info() const {
  EngineInfo i;
  i.backend = "cuda";
  i.device = absl::StrCat(device_name_, ": persistent kernel, ", config_->blocks, " blocks x ",
                          config_->threads, " threads (", config_->scout_warps, " scout warps), ",
                          config_->shards, " submission queues");
  i.ring_slots = ring_->slot_count();
  i.workers = config_->blocks;
  i.max_tenants = options_.max_tenants;
  i.scratch_words = options_.scratch_words;
  return i;
}

}  // namespace mk::engine::cuda
