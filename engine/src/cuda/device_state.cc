#include "cuda/device_state.h"

#include <emmintrin.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cuda/cuda_status.h"
#include "cuda/megakernel.h"
#include "mk/base/page_memory.h"
#include "mk/base/status_macros.h"

namespace mk::engine::cuda {

absl::StatusOr<std::unique_ptr<DeviceState>> DeviceState::Create(const DeviceConfig& config,
                                                                  host::ControlBuffers& control) {
  std::unique_ptr<DeviceState> state(new DeviceState(config, control));
  MK_RETURN_IF_ERROR(state->Allocate());
  return state;
}

DeviceState::DeviceState(const DeviceConfig& config, host::ControlBuffers& control)
    : config_(config), control_buffers_(control) {}

absl::Status DeviceState::Allocate() {
  MK_CUDA_RETURN_IF_ERROR(cudaSetDevice(config_.device), "cudaSetDevice");
  MK_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                          "creating the kernel's stream");
  // Host buffers the kernel reads or writes are ordinary page-aligned (write-back cached)
  // memory registered as mapped. One page holds the doorbell and the block idle flags; the
  // submission and completion queues follow.
  const size_t page_bytes = base::PageRoundUp(sizeof(Doorbell) + config_.blocks * sizeof(uint32_t));
  MK_RETURN_IF_ERROR(RegisterNew(page_bytes, &control_page_, "the doorbell page"));
  doorbell_ = reinterpret_cast<Doorbell*>(control_page_.data);
  block_idle_ = reinterpret_cast<uint32_t*>(control_page_.data + sizeof(Doorbell));
  const size_t sq_bytes = config_.shards * config_.sq_capacity * kEntryWords * sizeof(uint64_t);
  MK_RETURN_IF_ERROR(RegisterNew(base::PageRoundUp(sq_bytes), &sq_buffer_,
                                 absl::StrCat("the ", sq_bytes, "-byte submission queues")));
  sq_ = reinterpret_cast<uint64_t*>(sq_buffer_.data);
  const size_t cq_bytes =
      config_.shards * config_.sq_capacity * kCompletionWords * sizeof(uint64_t);
  MK_RETURN_IF_ERROR(RegisterNew(base::PageRoundUp(cq_bytes), &cq_buffer_,
                                 absl::StrCat("the ", cq_bytes, "-byte completion queues")));
  cq_ = reinterpret_cast<uint64_t*>(cq_buffer_.data);

  absl::Span<uint32_t> log = control_buffers_.debug_log_storage();
  MK_CUDA_RETURN_IF_ERROR(
      cudaHostRegister(log.data(), base::PageRoundUp(log.size() * sizeof(uint32_t)),
                       cudaHostRegisterMapped),
      "registering the debug log");
  log_registered_ = true;

  MK_CUDA_RETURN_IF_ERROR(
      cudaMalloc(reinterpret_cast<void**>(&claim_), kMaxShards * sizeof(*claim_)),
      "allocating the claim counters");
  const protocol::control::Layout layout = control_buffers_.layout();
  const size_t control_bytes = size_t{layout.TotalWords()} * sizeof(uint32_t);
  MK_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&control_), control_bytes),
                          "allocating the device control buffer");
  MK_CUDA_RETURN_IF_ERROR(cudaMemset(control_, 0, control_bytes), "clearing the control buffer");

  Doorbell* doorbell = nullptr;
  MK_RETURN_IF_ERROR(MappedDevicePointer(doorbell_, &doorbell, "mapping the doorbell"));
  uint64_t* sq = nullptr;
  MK_RETURN_IF_ERROR(MappedDevicePointer(sq_, &sq, "mapping the submission queue"));
  MK_RETURN_IF_ERROR(MappedDevicePointer(block_idle_, &params_.block_idle, "mapping the idle flags"));
  uint64_t* cq = nullptr;
  MK_RETURN_IF_ERROR(MappedDevicePointer(cq_, &cq, "mapping the completion queues"));
  params_.cq = cq;
  MK_RETURN_IF_ERROR(MappedDevicePointer(log.data(), &params_.debug_log, "mapping the debug log"));
  params_.doorbell = doorbell;
  params_.sq = reinterpret_cast<const uint32_t*>(sq);
  params_.sq_mask = config_.sq_capacity - 1;
  params_.shards = config_.shards;
  params_.claim = claim_;
  params_.control = control_;
  params_.layout = layout;
  params_.debug_log_records = static_cast<uint32_t>(
      (log.size() - protocol::debug_log::kFirstRecordWord) / protocol::debug_log::kRecordWords);
  params_.max_backoff_ns = config_.max_backoff_ns;
  params_.scout_warps = config_.scout_warps;
  return absl::OkStatus();
}

void DeviceState::HostBuffer::Free() {
  std::free(data);
  data = nullptr;
}

absl::Status DeviceState::RegisterNew(size_t bytes, HostBuffer* out, absl::string_view what) {
  out->data = static_cast<uint8_t*>(base::AllocatePages(bytes));
  if (out->data == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cuda: cannot allocate ", what, " (", bytes, " bytes); lower --ring_slots"));
  }
  MK_CUDA_RETURN_IF_ERROR(cudaHostRegister(out->data, bytes, cudaHostRegisterMapped),
                          absl::StrCat("registering ", what));
  out->registered = true;
  return absl::OkStatus();
}

DeviceState::~DeviceState() {
  // Host memory is ours to free in every case; the registrations and device resources are gone
  // after a reset (Abandon).
  struct FreeBuffers {
    DeviceState* state;
    ~FreeBuffers() {
      state->control_page_.Free();
      state->sq_buffer_.Free();
      state->cq_buffer_.Free();
    }
  } free_buffers{this};
  if (abandoned_) return;
  // Errors here cannot be acted on (teardown); each release is independent.
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  for (HostBuffer* b : {&control_page_, &sq_buffer_, &cq_buffer_}) {
    if (b->registered) cudaHostUnregister(b->data);
  }
  if (log_registered_) cudaHostUnregister(control_buffers_.debug_log_storage().data());
  if (claim_ != nullptr) cudaFree(claim_);
  if (control_ != nullptr) cudaFree(control_);
}

absl::Status DeviceState::Launch(const uint64_t* first_positions) {
  unsigned long long first[kMaxShards] = {};
  for (uint32_t s = 0; s < config_.shards; ++s) first[s] = first_positions[s];
  MK_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(claim_, first, sizeof(first), cudaMemcpyHostToDevice, stream_),
      "setting the claim counters");
  MK_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_), "setting the claim counters");
  std::memset(block_idle_, 0, config_.blocks * sizeof(uint32_t));
  SetPaused(false);
  SetFlag(&ShardDoorbell::stop, 0);
  for (uint32_t s = 0; s < config_.shards; ++s) PublishTail(s, first_positions[s], false);
  MK_CUDA_RETURN_IF_ERROR(LaunchMegakernel(params_, static_cast<int>(config_.blocks),
                                           static_cast<int>(config_.threads), stream_),
                          absl::StrCat("launching the megakernel (", config_.blocks, " x ",
                                       config_.threads, " threads)"));
  return absl::OkStatus();
}

void DeviceState::SetFlag(uint32_t ShardDoorbell::*flag, uint32_t value) {
  for (ShardDoorbell& d : doorbell_->shard) {
    std::atomic_ref<uint32_t>(d.*flag).store(value, std::memory_order_seq_cst);
  }
}

void DeviceState::RequestStop() { SetFlag(&ShardDoorbell::stop, 1); }

absl::Status DeviceState::WaitStopped(absl::Time deadline) {
  for (;;) {
    const cudaError_t e = cudaStreamQuery(stream_);
    if (e == cudaSuccess) return absl::OkStatus();
    if (e != cudaErrorNotReady) return CudaStatus(e, "the megakernel");
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          "cuda: the megakernel did not stop when asked");
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

void DeviceState::PublishTail(uint32_t shard, uint64_t tail, bool streamed) {
  if (streamed) _mm_sfence();  // non-temporal stores are not ordered by the release store
  std::atomic_ref<uint64_t>(doorbell_->shard[shard].sq_tail).store(tail, std::memory_order_release);
}

void DeviceState::WriteEntry(uint32_t shard, uint64_t position, uint32_t ring_index,
                             const uint32_t* slot, bool streaming) {
  uint64_t* entry = sq_ + QueueIndex(shard, position) * kEntryWords;
  const uint32_t tag =
      paused_.load(std::memory_order_relaxed) ? kHeldEntryTag : PositionTag(position);
  // Four values at a time, interleaved with the tag into two 16-byte stores of two tagged words
  // each. An aligned 16-byte store never tears an aligned 8-byte half, which is all a tagged
  // word needs.
  const __m128i tags = _mm_set1_epi32(static_cast<int>(tag));
  const __m128i values[4] = {
      _mm_set_epi32(static_cast<int>(slot[3]), static_cast<int>(slot[2]),
                    static_cast<int>(slot[1]), static_cast<int>(ring_index)),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(slot + 4)),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(slot + 8)),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(slot + 12)),
  };
  static_assert(kEntryWords == 16, "four groups of four values");
  auto* out = reinterpret_cast<__m128i*>(entry);
  for (int i = 0; i < 4; ++i) {
    const __m128i low = _mm_unpacklo_epi32(values[i], tags);
    const __m128i high = _mm_unpackhi_epi32(values[i], tags);
    if (streaming) {
      _mm_stream_si128(out + 2 * i, low);
      _mm_stream_si128(out + 2 * i + 1, high);
    } else {
      _mm_store_si128(out + 2 * i, low);
      _mm_store_si128(out + 2 * i + 1, high);
    }
  }
}

void DeviceState::SetPaused(bool paused) {
  // The host-side flag first: every entry written after SetPaused(true) returns is held.
  paused_.store(paused, std::memory_order_seq_cst);
  SetFlag(&ShardDoorbell::paused, paused ? 1 : 0);
}

uint32_t DeviceState::IdleBlocks() const {
  uint32_t idle = 0;
  for (uint32_t b = 0; b < config_.blocks; ++b) {
    idle += std::atomic_ref<uint32_t>(block_idle_[b]).load(std::memory_order_acquire) != 0;
  }
  return idle;
}

}  // namespace mk::engine::cuda
