#include <cuda_runtime_api.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cuda/cuda_status.h"
#include "cuda/ptx_memory.cuh"
#include "cuda_baselines/launch_baselines.h"
#include "mk/base/page_memory.h"
#include "mk/engine/interpreter.h"
#include "mk/engine/opcode_registry.h"

namespace mk::bench {

namespace protocol = ::mk::protocol;
using ::mk::engine::cuda::CudaStatus;
using ::mk::engine::cuda::LoadVolatile4;

namespace {

__global__ void EmptyKernel() {}

// The launch-per-batch executor's kernel: one thread per slot, the shared interpreter, results
// then STATUS written back into the (device-memory) slot.
__global__ void RunSlots(uint32_t* slots, uint32_t count, protocol::ExecContext ctx) {
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= count) return;
  uint32_t* w = slots + static_cast<uint64_t>(i) * protocol::kSlotWords;
  uint32_t local[protocol::kSlotWords];
  for (uint32_t k = 0; k < protocol::kSlotWords; ++k) local[k] = w[k];
  const protocol::ExecResult r = protocol::Execute<protocol::ProductOpcodes>(local, i, ctx);
  for (uint32_t k = 0; k < protocol::kArgWords; ++k) {
    w[protocol::kWordArg0 + k] = k < r.result_count ? r.results[k] : 0;
  }
  w[protocol::kWordStatus] = static_cast<uint32_t>(r.status);
}

// Mapped-memory echo: words[0] = request, words[1] = reply, words[2] = stop, words[16..31] =
// the 64-byte slot read after each request, the way `read` says (LaunchBaselines::SlotRead).
// Lane 0 polls; the warp reads the slot.
__global__ void FlagEcho(uint32_t* words, LaunchBaselines::SlotRead read) {
  volatile uint32_t* v = words;
  const uint32_t lane = threadIdx.x;
  uint32_t last = 0;  // the host starts every run at request 0 and asks from 1 on
  for (;;) {
    uint32_t request = last, stop = 0;
    if (lane == 0) {
      while ((stop = v[2]) == 0 && (request = v[0]) == last) {
      }
    }
    if (__shfl_sync(~0u, stop, 0) != 0) return;
    last = __shfl_sync(~0u, request, 0);
    uint32_t mix = 0;  // a data dependency on the slot: a.x ^ b.y ^ c.z ^ d.w of its 4 chunks
    if (read == LaunchBaselines::SlotRead::kOneThread && lane == 0) {
      const uint4 a = LoadVolatile4(words + 16);
      const uint4 b = LoadVolatile4(words + 20);
      const uint4 c = LoadVolatile4(words + 24);
      const uint4 d = LoadVolatile4(words + 28);
      mix = a.x ^ b.y ^ c.z ^ d.w;
    } else if (read == LaunchBaselines::SlotRead::kCoalesced) {
      if (lane < 4) {
        const uint4 c = LoadVolatile4(words + 16 + 4 * lane);
        mix = lane == 0 ? c.x : lane == 1 ? c.y : lane == 2 ? c.z : c.w;
      }
      mix ^= __shfl_xor_sync(~0u, mix, 1);
      mix ^= __shfl_xor_sync(~0u, mix, 2);
    }
    if (lane == 0) v[1] = last ^ mix;
  }
}

double MicrosSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

struct LaunchBaselines::Impl {
  uint32_t max_batch = 0;
  cudaStream_t stream = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t graph_exec = nullptr;
  uint32_t* host_slots = nullptr;  // pinned
  uint32_t* device_slots = nullptr;
  uint32_t* device_control = nullptr;
  uint32_t* echo_words = nullptr;  // page-aligned, registered (mapped)
  protocol::ExecContext ctx{};

  ~Impl() {
    if (graph_exec != nullptr) cudaGraphExecDestroy(graph_exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (host_slots != nullptr) cudaFreeHost(host_slots);
    if (device_slots != nullptr) cudaFree(device_slots);
    if (device_control != nullptr) cudaFree(device_control);
    if (stream != nullptr) cudaStreamDestroy(stream);
    if (echo_words != nullptr) {
      cudaHostUnregister(echo_words);
      std::free(echo_words);
    }
  }
};

absl::StatusOr<std::unique_ptr<LaunchBaselines>> LaunchBaselines::Create(uint32_t max_batch) {
  auto impl = std::make_unique<Impl>();
  impl->max_batch = max_batch;
  // Load this module's kernels now: loading one later, while a persistent kernel runs, would
  // wait for the context to go idle.
  cudaFuncAttributes attributes;
  MK_CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(&attributes, EmptyKernel), "loading EmptyKernel");
  MK_CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(&attributes, RunSlots), "loading RunSlots");
  MK_CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(&attributes, FlagEcho), "loading FlagEcho");
  impl->echo_words = static_cast<uint32_t*>(base::AllocatePages(base::kPageBytes));
  if (impl->echo_words == nullptr) return absl::ResourceExhaustedError("baseline: no memory");
  MK_CUDA_RETURN_IF_ERROR(
      cudaHostRegister(impl->echo_words, base::kPageBytes, cudaHostRegisterMapped),
      "registering the echo page");
  MK_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking),
                          "creating the baseline stream");
  const size_t bytes = size_t{max_batch} * protocol::kSlotBytes;
  MK_CUDA_RETURN_IF_ERROR(cudaHostAlloc(reinterpret_cast<void**>(&impl->host_slots), bytes, 0),
                          "allocating pinned baseline slots");
  MK_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&impl->device_slots), bytes),
                          "allocating device baseline slots");
  const protocol::control::Layout layout{1, 16};
  MK_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&impl->device_control),
                                     layout.TotalWords() * sizeof(uint32_t)),
                          "allocating the baseline control buffer");
  MK_CUDA_RETURN_IF_ERROR(
      cudaMemset(impl->device_control, 0, layout.TotalWords() * sizeof(uint32_t)),
      "clearing the baseline control buffer");
  impl->ctx.control = impl->device_control;
  impl->ctx.layout = layout;
  std::memset(impl->host_slots, 0, bytes);
  for (uint32_t i = 0; i < max_batch; ++i) {
    uint32_t* w = impl->host_slots + size_t{i} * protocol::kSlotWords;
    w[protocol::kWordStatus] = static_cast<uint32_t>(protocol::SlotStatus::kPublished);
    w[protocol::kWordOpcode] = protocol::opcode::kNop;
    w[protocol::kWordPriority] = protocol::kDefaultPriority;
  }
  MK_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(impl->stream, cudaStreamCaptureModeThreadLocal),
                          "capturing the baseline graph");
  EmptyKernel<<<1, 1, 0, impl->stream>>>();
  MK_CUDA_RETURN_IF_ERROR(cudaStreamEndCapture(impl->stream, &impl->graph),
                          "capturing the baseline graph");
  MK_CUDA_RETURN_IF_ERROR(cudaGraphInstantiate(&impl->graph_exec, impl->graph, 0),
                          "instantiating the baseline graph");
  return std::unique_ptr<LaunchBaselines>(new LaunchBaselines(std::move(impl)));
}

LaunchBaselines::LaunchBaselines(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LaunchBaselines::~LaunchBaselines() = default;

absl::StatusOr<double> LaunchBaselines::EmptyLaunchSync() {
  const auto start = std::chrono::steady_clock::now();
  EmptyKernel<<<1, 1, 0, impl_->stream>>>();
  MK_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(impl_->stream), "empty launch + sync");
  return MicrosSince(start);
}

absl::StatusOr<double> LaunchBaselines::GraphLaunchSync() {
  const auto start = std::chrono::steady_clock::now();
  MK_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(impl_->graph_exec, impl_->stream), "graph launch");
  MK_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(impl_->stream), "graph launch + sync");
  return MicrosSince(start);
}

absl::StatusOr<double> LaunchBaselines::LaunchPerBatch(uint32_t batch) {
  if (batch == 0 || batch > impl_->max_batch) {
    return absl::InvalidArgumentError(absl::StrCat("baseline: batch ", batch, " out of range"));
  }
  const size_t bytes = size_t{batch} * protocol::kSlotBytes;
  const auto start = std::chrono::steady_clock::now();
  MK_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(impl_->device_slots, impl_->host_slots, bytes,
                                          cudaMemcpyHostToDevice, impl_->stream),
                          "copying a batch in");
  RunSlots<<<(batch + 255) / 256, 256, 0, impl_->stream>>>(impl_->device_slots, batch, impl_->ctx);
  MK_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(impl_->host_slots, impl_->device_slots, bytes,
                                          cudaMemcpyDeviceToHost, impl_->stream),
                          "copying a batch out");
  MK_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(impl_->stream), "launch-per-batch");
  const double elapsed = MicrosSince(start);
  const uint32_t last = impl_->host_slots[size_t{batch - 1} * protocol::kSlotWords];
  if (last != static_cast<uint32_t>(protocol::SlotStatus::kDone)) {
    return absl::InternalError(absl::StrCat("baseline: slot ", batch - 1, " came back ", last));
  }
  // Re-arm the batch for the next run (the copy-back overwrote STATUS).
  for (uint32_t i = 0; i < batch; ++i) {
    impl_->host_slots[size_t{i} * protocol::kSlotWords] =
        static_cast<uint32_t>(protocol::SlotStatus::kPublished);
  }
  return elapsed;
}

absl::StatusOr<std::vector<double>> LaunchBaselines::MappedFlagRoundTrips(int n, SlotRead read) {
  uint32_t* words = impl_->echo_words;
  std::atomic_ref<uint32_t>(words[0]).store(0);
  std::atomic_ref<uint32_t>(words[1]).store(0);
  std::atomic_ref<uint32_t>(words[2]).store(0);
  void* mapped = nullptr;
  MK_CUDA_RETURN_IF_ERROR(cudaHostGetDevicePointer(&mapped, words, 0), "mapping the echo page");
  FlagEcho<<<1, 32, 0, impl_->stream>>>(static_cast<uint32_t*>(mapped), read);
  MK_CUDA_RETURN_IF_ERROR(cudaGetLastError(), "launching the echo warp");
  std::vector<double> us;
  us.reserve(n);
  const uint32_t mix =
      read != SlotRead::kNone ? (words[16] ^ words[21] ^ words[26] ^ words[31]) : 0;
  for (int i = 1; i <= n + 100; ++i) {  // the first 100 warm up
    const uint32_t request = static_cast<uint32_t>(i);
    const auto start = std::chrono::steady_clock::now();
    std::atomic_ref<uint32_t>(words[0]).store(request, std::memory_order_release);
    const auto give_up = start + std::chrono::seconds(5);
    while (std::atomic_ref<uint32_t>(words[1]).load(std::memory_order_acquire) != (request ^ mix)) {
      if (std::chrono::steady_clock::now() > give_up) {
        std::atomic_ref<uint32_t>(words[2]).store(1);
        return absl::DeadlineExceededError("baseline: the echo warp did not answer in 5 s");
      }
    }
    if (i > 100) us.push_back(MicrosSince(start));
  }
  std::atomic_ref<uint32_t>(words[2]).store(1, std::memory_order_release);
  MK_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(impl_->stream), "stopping the echo warp");
  return us;
}

namespace {

LaunchBaselines::HostAccess TimeHostAccess(const char* kind, uint32_t* words, size_t bytes) {
  const size_t lines = bytes / 64;
  // Ordinary stores over a buffer larger than the caches, so write-backs are counted.
  auto start = std::chrono::steady_clock::now();
  for (size_t l = 0; l < lines; ++l) {
    uint32_t* line = words + l * 16;
    for (uint32_t w = 0; w < 16; ++w) line[w] = static_cast<uint32_t>(l + w);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const double write_ns = MicrosSince(start) * 1e3 / lines;
  // Non-temporal stores (whole lines straight to memory).
  start = std::chrono::steady_clock::now();
  const __m128i v = _mm_set1_epi32(7);
  for (size_t l = 0; l < lines; ++l) {
    auto* line = reinterpret_cast<__m128i*>(words + l * 16);
    for (uint32_t c = 0; c < 4; ++c) _mm_stream_si128(line + c, v);
  }
  _mm_sfence();
  const double stream_ns = MicrosSince(start) * 1e3 / lines;
  start = std::chrono::steady_clock::now();
  uint64_t sum = 0;
  for (size_t l = 0; l < lines; ++l) {
    const volatile uint32_t* line = words + l * 16;
    for (uint32_t w = 0; w < 16; ++w) sum += line[w];
  }
  const double read_ns = MicrosSince(start) * 1e3 / lines;
  if (sum == 42) std::abort();  // keeps the reads
  return {kind, write_ns, stream_ns, read_ns};
}

}  // namespace

absl::StatusOr<std::vector<LaunchBaselines::HostAccess>> LaunchBaselines::ProbeHostAccess() {
  constexpr size_t kBytes = 64 << 20;
  std::vector<HostAccess> out;
  uint32_t* plain = static_cast<uint32_t*>(base::AllocatePages(kBytes));
  if (plain == nullptr) return absl::ResourceExhaustedError("baseline: no memory");
  out.push_back(TimeHostAccess("malloc", plain, kBytes));
  MK_CUDA_RETURN_IF_ERROR(cudaHostRegister(plain, kBytes, cudaHostRegisterMapped),
                          "registering the probe buffer");
  out.push_back(TimeHostAccess("registered", plain, kBytes));
  cudaHostUnregister(plain);
  std::free(plain);
  for (unsigned flags : {cudaHostAllocMapped, cudaHostAllocMapped | cudaHostAllocWriteCombined}) {
    uint32_t* pinned = nullptr;
    MK_CUDA_RETURN_IF_ERROR(cudaHostAlloc(reinterpret_cast<void**>(&pinned), kBytes, flags),
                            "allocating the probe buffer");
    out.push_back(
        TimeHostAccess((flags & cudaHostAllocWriteCombined) != 0 ? "host_alloc_wc" : "host_alloc",
                       pinned, kBytes));
    cudaFreeHost(pinned);
  }
  return out;
}

absl::StatusOr<double> PinnedHostToDeviceBandwidth(size_t bytes, int repeats) {
  void* host = nullptr;
  void* device = nullptr;
  cudaStream_t stream = nullptr;
  struct Release {
    void** host;
    void** device;
    cudaStream_t* stream;
    ~Release() {
      if (*stream != nullptr) cudaStreamDestroy(*stream);
      if (*host != nullptr) cudaFreeHost(*host);
      if (*device != nullptr) cudaFree(*device);
    }
  } release{&host, &device, &stream};
  MK_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&host, bytes, cudaHostAllocDefault), "pinned buffer");
  MK_CUDA_RETURN_IF_ERROR(cudaMalloc(&device, bytes), "device buffer");
  MK_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  std::memset(host, 1, bytes);
  MK_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream),
                          "warm-up copy");
  MK_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream), "warm-up copy");
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) {
    MK_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream),
                            "copy");
  }
  MK_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream), "copies");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(bytes) * repeats / seconds;
}

absl::StatusOr<std::unique_ptr<CopyLatencyProbe>> CopyLatencyProbe::Create(size_t bytes) {
  std::unique_ptr<CopyLatencyProbe> p(new CopyLatencyProbe());
  p->bytes_ = bytes;
  MK_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&p->host_, bytes, cudaHostAllocDefault), "pinned buffer");
  MK_CUDA_RETURN_IF_ERROR(cudaMalloc(&p->device_, bytes), "device buffer");
  cudaStream_t stream;
  MK_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  p->stream_ = stream;
  cudaEvent_t event;
  MK_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "event");
  p->event_ = event;
  return p;
}

CopyLatencyProbe::~CopyLatencyProbe() {
  if (event_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  if (stream_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  if (host_ != nullptr) cudaFreeHost(host_);
  if (device_ != nullptr) cudaFree(device_);
}

absl::StatusOr<double> CopyLatencyProbe::Measure(int repeats) {
  auto stream = static_cast<cudaStream_t>(stream_);
  auto event = static_cast<cudaEvent_t>(event_);
  std::vector<double> us;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    MK_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device_, host_, bytes_, cudaMemcpyHostToDevice, stream),
                            "copy");
    MK_CUDA_RETURN_IF_ERROR(cudaEventRecord(event, stream), "event");
    cudaError_t e;
    while ((e = cudaEventQuery(event)) == cudaErrorNotReady) _mm_pause();
    MK_CUDA_RETURN_IF_ERROR(e, "copy");
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

}  // namespace mk::bench
