#include "cuda/device_state.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "cuda/cuda_status.h"
#include "cuda/megakernel.h"
#include "mk/base/page_memory.h"
#include "mk/base/status_macros.h"

namespace mk::engine::cuda {

absl::StatusOr<std::unique_ptr<DeviceState>> DeviceState::Create(const DeviceConfig& config,
                                                                 const offload::QueueShape& shape,
                                                                 host::ControlBuffers& control) {
  MK_ASSIGN_OR_RETURN(std::unique_ptr<offload::SubmissionQueues> queues,
                      offload::SubmissionQueues::Create(shape));
  std::unique_ptr<DeviceState> state(new DeviceState(config, std::move(queues), control));
  MK_RETURN_IF_ERROR(state->Allocate());
  return state;
}

DeviceState::DeviceState(const DeviceConfig& config,
                         std::unique_ptr<offload::SubmissionQueues> queues,
                         host::ControlBuffers& control)
    : KernelPort(std::move(queues)), config_(config), control_buffers_(control) {}

absl::Status DeviceState::Register(const offload::SubmissionQueues::Region& region,
                                   const char* what) {
  MK_CUDA_RETURN_IF_ERROR(cudaHostRegister(region.data, region.bytes, cudaHostRegisterMapped),
                          absl::StrCat("registering ", what, " (", region.bytes, " bytes)"));
  registered_[registered_count_++] = region.data;
  return absl::OkStatus();
}

absl::Status DeviceState::Allocate() {
  MK_CUDA_RETURN_IF_ERROR(cudaSetDevice(config_.device), "cudaSetDevice");
  MK_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                          "creating the kernel's stream");
  // The queues are ordinary page-aligned (write-back cached) host memory registered as mapped:
  // one page holds the doorbell and the block idle flags; the submission and completion queues
  // follow.
  MK_RETURN_IF_ERROR(Register(queues().control_page(), "the doorbell page"));
  MK_RETURN_IF_ERROR(Register(queues().submission_region(), "the submission queues"));
  MK_RETURN_IF_ERROR(Register(queues().completion_region(), "the completion queues"));
  absl::Span<uint32_t> log = control_buffers_.debug_log_storage();
  MK_CUDA_RETURN_IF_ERROR(
      cudaHostRegister(log.data(), base::PageRoundUp(log.size() * sizeof(uint32_t)),
                       cudaHostRegisterMapped),
      "registering the debug log");
  log_registered_ = true;

  MK_CUDA_RETURN_IF_ERROR(
      cudaMalloc(reinterpret_cast<void**>(&claim_), offload::kMaxShards * sizeof(*claim_)),
      "allocating the claim counters");
  const protocol::control::Layout layout = control_buffers_.control().layout();
  const size_t control_bytes = size_t{layout.TotalWords()} * sizeof(uint32_t);
  MK_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&control_), control_bytes),
                          "allocating the device control buffer");
  MK_CUDA_RETURN_IF_ERROR(cudaMemset(control_, 0, control_bytes), "clearing the control buffer");

  offload::Doorbell* doorbell = nullptr;
  MK_RETURN_IF_ERROR(MappedDevicePointer(queues().doorbell(), &doorbell, "mapping the doorbell"));
  uint64_t* sq = nullptr;
  MK_RETURN_IF_ERROR(
      MappedDevicePointer(reinterpret_cast<uint64_t*>(queues().submission_region().data), &sq,
                          "mapping the submission queue"));
  MK_RETURN_IF_ERROR(
      MappedDevicePointer(queues().block_idle(), &params_.block_idle, "mapping the idle flags"));
  MK_RETURN_IF_ERROR(
      MappedDevicePointer(queues().cq(), &params_.cq, "mapping the completion queues"));
  MK_RETURN_IF_ERROR(MappedDevicePointer(log.data(), &params_.debug_log, "mapping the debug log"));
  const offload::QueueShape& shape = queues().shape();
  params_.doorbell = doorbell;
  params_.sq = reinterpret_cast<const uint32_t*>(sq);
  params_.sq_mask = shape.sq_capacity - 1;
  params_.shards = shape.shards;
  params_.claim = claim_;
  params_.control = control_;
  params_.layout = layout;
  params_.debug_log_records = control_buffers_.debug_log_records();
  params_.max_backoff_ns = config_.max_backoff_ns;
  params_.scout_warps = config_.scout_warps;
  return absl::OkStatus();
}

DeviceState::~DeviceState() {
  // The registrations and device resources are gone after a reset (Abandon); the queues' host
  // memory is freed with the KernelPort in every case.
  if (abandoned_) return;
  // Errors here cannot be acted on (teardown); each release is independent.
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  for (int i = 0; i < registered_count_; ++i) cudaHostUnregister(registered_[i]);
  if (log_registered_) cudaHostUnregister(control_buffers_.debug_log_storage().data());
  if (claim_ != nullptr) cudaFree(claim_);
  if (control_ != nullptr) cudaFree(control_);
}

absl::Status DeviceState::Launch(const uint64_t* first_positions) {
  const offload::QueueShape& shape = queues().shape();
  unsigned long long first[offload::kMaxShards] = {};  // NOLINT(google-runtime-int): CUDA's
  for (uint32_t s = 0; s < shape.shards; ++s) first[s] = first_positions[s];
  MK_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(claim_, first, sizeof(first), cudaMemcpyHostToDevice, stream_),
      "setting the claim counters");
  MK_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_), "setting the claim counters");
  queues().ResetForLaunch(first_positions);
  MK_CUDA_RETURN_IF_ERROR(LaunchMegakernel(params_, static_cast<int>(shape.blocks),
                                           static_cast<int>(config_.threads), stream_),
                          absl::StrCat("launching the megakernel (", shape.blocks, " x ",
                                       config_.threads, " threads)"));
  return absl::OkStatus();
}

absl::Status DeviceState::WaitStopped(absl::Time deadline) {
  for (;;) {
    const cudaError_t e = cudaStreamQuery(stream_);
    if (e == cudaSuccess) return absl::OkStatus();
    if (e != cudaErrorNotReady) return CudaStatus(e, "the megakernel");
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError("cuda: the megakernel did not stop when asked");
    }
    // A device-side event with a deadline: poll the stream between short naps.
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

absl::Status DeviceState::KernelState() {
  const cudaError_t e = cudaStreamQuery(stream_);
  if (e == cudaErrorNotReady) return absl::OkStatus();
  if (e == cudaSuccess) {
    return absl::FailedPreconditionError("cuda: the megakernel exited without being asked to");
  }
  return CudaStatus(e, "the megakernel");
}

}  // namespace mk::engine::cuda
