#include "cuda/device_residency.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cuda/cuda_status.h"
#include "host/tree_hash.h"
#include "mk/base/cpu_relax.h"
#include "mk/base/log.h"
#include "mk/base/page_memory.h"
#include "mk/base/status_macros.h"
#include "mk/engine/engine.h"

namespace mk::engine::cuda {

static_assert(offload::kSharedOwner == kSharedResourceOwner);

#if MK_PROFILING
void DeviceResidency::CopyProfile::Record(Time issued, Time queued, Time done) {
  copies_.fetch_add(1, std::memory_order_relaxed);
  issue_ns_.fetch_add((queued - issued).count(), std::memory_order_relaxed);
  await_ns_.fetch_add((done - queued).count(), std::memory_order_relaxed);
}

DeviceResidency::CopyProfile::~CopyProfile() {
  if (copies_.load() == 0) return;
  const double n = static_cast<double>(copies_.load());
  base::LogInfo("cuda profile: ", n, " inline chunk copies: issue ", issue_ns_.load() / n / 1e3,
                " us, await ", await_ns_.load() / n / 1e3, " us");
}
#endif

namespace {

constexpr uint32_t kTableEntries = 4096;  // resource ids map to entry id % 4096
constexpr uint64_t kRoomAlignment = 256;  // every room starts 256-byte aligned

constexpr int kInitialEvents = 64;  // more are created when more chunks are in flight
// Chunks up to this size are copied while the reader's thread waits (a few microseconds), so a
// small resource's load needs no hand-off to the watcher and back; larger chunks overlap their
// copies with later reads.
constexpr uint32_t kInlineCopyBytes = 256 << 10;
// Waits for a copy's event by polling: a chunk copy takes microseconds. Only a copy still
// running after a millisecond yields between polls.
cudaError_t AwaitCopy(cudaEvent_t event) {
  const auto start = std::chrono::steady_clock::now();
  cudaError_t e;
  for (uint32_t polls = 0; (e = cudaEventQuery(event)) == cudaErrorNotReady; ++polls) {
    if (polls > 256 && std::chrono::steady_clock::now() - start > std::chrono::milliseconds(1)) {
      std::this_thread::yield();
    } else {
      base::CpuRelax();
    }
  }
  return e;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceResidency>> DeviceResidency::Create(uint64_t budget_bytes,
                                                                         uint32_t blocks,
                                                                         io::FileReader& reader) {
  std::unique_ptr<DeviceResidency> store(new DeviceResidency(budget_bytes, blocks, reader));
  if (store->table_ == nullptr) {
    return absl::ResourceExhaustedError("cuda: cannot allocate the residency table");
  }
  MK_RETURN_IF_ERROR(store->Allocate());
  return store;
}

DeviceResidency::DeviceResidency(uint64_t budget_bytes, uint32_t blocks, io::FileReader& reader)
    : budget_bytes_(budget_bytes),
      blocks_(blocks),
      staging_(reader.staging()),
      staging_bytes_(reader.staging_bytes()),
      table_bytes_(kTableEntries * sizeof(offload::ResidencyEntry)) {
  table_ = static_cast<offload::ResidencyEntry*>(base::AllocatePages(table_bytes_));
  owner_.assign(kTableEntries, 0);
}

DeviceResidency::~DeviceResidency() {
  ReleaseDeviceResources();
  // An abandoned store's table stays mapped to a kernel that may still read it: leaked.
  if (!abandoned_.load(std::memory_order_acquire)) std::free(table_);
}

absl::Status DeviceResidency::Allocate() {
  MK_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking),
                          "creating the resource copy stream");
  const uint64_t arena_bytes = std::max<uint64_t>(budget_bytes_, kRoomAlignment);
  if (cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&arena_), arena_bytes);
      e != cudaSuccess) {
    return CudaStatus(e,
                      absl::StrCat("allocating the ", arena_bytes,
                                   "-byte residency arena (the residency budget)"),
                      "lower --residency_budget_bytes");
  }
  params_.max_leaves = static_cast<uint32_t>(std::max<uint64_t>(
      1, (budget_bytes_ + host::kTreeHashBlockBytes - 1) / host::kTreeHashBlockBytes));
  MK_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&params_.leaf_scratch),
                                     size_t{blocks_} * params_.max_leaves * sizeof(uint64_t)),
                          "allocating CHECKSUM's leaf scratch");
  if (staging_ != nullptr && staging_bytes_ != 0) {
    MK_CUDA_RETURN_IF_ERROR(cudaHostRegister(staging_, staging_bytes_, cudaHostRegisterDefault),
                            "registering the io staging buffers");
    staging_registered_ = true;
  }
  MK_CUDA_RETURN_IF_ERROR(
      cudaHostRegister(table_, base::PageRoundUp(table_bytes_), cudaHostRegisterMapped),
      "registering the residency table");
  table_registered_ = true;
  offload::ResidencyEntry* device_table = nullptr;
  MK_RETURN_IF_ERROR(MappedDevicePointer(table_, &device_table, "mapping the residency table"));
  params_.table = device_table;
  params_.table_mask = kTableEntries - 1;
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    for (int i = 0; i < kInitialEvents; ++i) {
      cudaEvent_t event;
      MK_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, cudaEventDisableTiming),
                              "creating copy events");
      events_.push_back(event);
    }
    watch_stop_ = false;
  }
  watcher_ = std::thread([this] { WatchLoop(); });
  std::lock_guard<std::mutex> lock(mu_);
  free_.clear();
  free_[0] = budget_bytes_;
  return absl::OkStatus();
}

void DeviceResidency::StopWatcher() {
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    watch_stop_ = true;
  }
  watch_cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();  // after every queued copy was released
}

void DeviceResidency::WatchLoop() {
  std::unique_lock<std::mutex> lock(watch_mu_);
  for (;;) {
    watch_cv_.wait(lock, [this] { return watch_stop_ || !copies_.empty(); });
    if (copies_.empty()) return;
    Copy& oldest = copies_.front();
    const cudaEvent_t event = oldest.event;
    lock.unlock();
    // A chunk copy takes microseconds: poll (each query is a cheap driver call).
    const cudaError_t e = AwaitCopy(event);
    lock.lock();
    Copy done = std::move(copies_.front());
    copies_.pop_front();
    events_.push_back(done.event);
    lock.unlock();
    if (e != cudaSuccess) {
      std::lock_guard<std::mutex> placements(mu_);
      if (auto it = placements_.find(done.id); it != placements_.end()) {
        it->second.copy_failed = true;
      }
    }
    done.release();
    lock.lock();
  }
}

absl::Status DeviceResidency::CopyChunk(uint32_t id, uint8_t* to, const io::Chunk& chunk,
                                        std::function<void()> release) {
  cudaEvent_t event;
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    if (events_.empty()) {
      MK_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, cudaEventDisableTiming),
                              "creating a copy event");
    } else {
      event = events_.back();
      events_.pop_back();
    }
  }
  const Time issued = offload::ProfileClock::Now();
  cudaError_t e =
      cudaMemcpyAsync(to, chunk.data, chunk.length, cudaMemcpyHostToDevice, copy_stream_);
  if (e == cudaSuccess) e = cudaEventRecord(event, copy_stream_);
  if (e == cudaSuccess && chunk.length <= kInlineCopyBytes) {
    const Time queued = offload::ProfileClock::Now();
    e = AwaitCopy(event);
    profile_.Record(issued, queued, offload::ProfileClock::Now());
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      events_.push_back(event);
    }
    if (e != cudaSuccess) {
      return io::IoError(EIO,
                         std::string(CudaStatus(e, "copying a chunk to the device").message()));
    }
    release();
    return absl::OkStatus();
  }
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    if (e != cudaSuccess) {
      events_.push_back(event);
    } else {
      copies_.push_back(Copy{id, event, std::move(release)});
    }
  }
  if (e != cudaSuccess) {
    // A copy that was queued must end before its staging buffer goes back to the reader.
    cudaStreamSynchronize(copy_stream_);
    return io::IoError(EIO, std::string(CudaStatus(e, "copying a chunk to the device").message()));
  }
  watch_cv_.notify_one();
  return absl::OkStatus();
}

void DeviceResidency::Abandon() { abandoned_.store(true, std::memory_order_release); }

void DeviceResidency::ReleaseDeviceResources() {
  StopWatcher();
  if (abandoned_.load(std::memory_order_acquire)) return;
  // Teardown: errors cannot be acted on; each release is independent.
  for (cudaEvent_t event : events_) cudaEventDestroy(event);
  events_.clear();
  if (copy_stream_ != nullptr) {
    cudaStreamSynchronize(copy_stream_);
    cudaStreamDestroy(copy_stream_);
  }
  if (arena_ != nullptr) cudaFree(arena_);
  if (params_.leaf_scratch != nullptr) cudaFree(params_.leaf_scratch);
  if (staging_registered_) cudaHostUnregister(staging_);
  if (table_registered_) cudaHostUnregister(table_);
  copy_stream_ = nullptr;
  arena_ = nullptr;
  params_ = offload::ResidencyParams{};
  staging_registered_ = table_registered_ = false;
}

absl::Status DeviceResidency::Rebuild() {
  // The reset destroyed every handle: forget them without releasing. No copy is in flight (the
  // loader let its loads finish first).
  StopWatcher();
  events_.clear();
  copy_stream_ = nullptr;
  arena_ = nullptr;
  params_ = offload::ResidencyParams{};
  staging_registered_ = table_registered_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    placements_.clear();
    owner_.assign(kTableEntries, 0);
  }
  std::memset(static_cast<void*>(table_), 0, table_bytes_);
  return Allocate();
}

bool DeviceResidency::AllocateRange(uint64_t bytes, uint64_t* offset) {
  const uint64_t want =
      (std::max<uint64_t>(bytes, 1) + kRoomAlignment - 1) / kRoomAlignment * kRoomAlignment;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < want) continue;
    *offset = it->first;
    const uint64_t rest = it->second - want;
    free_.erase(it);
    if (rest != 0) free_[*offset + want] = rest;
    return true;
  }
  return false;
}

void DeviceResidency::FreeRange(uint64_t offset, uint64_t bytes) {
  uint64_t size =
      (std::max<uint64_t>(bytes, 1) + kRoomAlignment - 1) / kRoomAlignment * kRoomAlignment;
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && offset + size == next->first) {  // merge with the range after
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {  // merge with the range before
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += size;
      return;
    }
  }
  free_[offset] = size;
}

bool DeviceResidency::Place(uint32_t id, uint32_t tenant, uint64_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  if (placements_.contains(id)) return true;
  uint32_t& owner = owner_[id & params_.table_mask];
  if (owner != 0) return false;  // another resource holds this table entry: evict first
  uint64_t offset = 0;
  if (!AllocateRange(length, &offset)) return false;
  owner = id + 1;
  placements_[id] = Placement{offset, length, tenant};
  return true;
}

std::optional<uint32_t> DeviceResidency::Obstacle(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint32_t owner = owner_[id & params_.table_mask];
  if (owner == 0 || owner == id + 1) return std::nullopt;
  return owner - 1;
}

absl::Status DeviceResidency::Fill(uint32_t id, const io::Resource& resource,
                                   io::FileReader& reader, io::ReadCallback done) {
  uint8_t* room;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = placements_.find(id);
    if (it == placements_.end()) {
      return absl::FailedPreconditionError(absl::StrCat("cuda: resource ", id, " has no room"));
    }
    room = arena_ + it->second.offset;
  }
  io::ChunkSink sink = [this, id, room](const io::Chunk& chunk, std::function<void()> release) {
    return CopyChunk(id, room + chunk.offset, chunk, std::move(release));
  };
  return reader.ReadChunks(resource.location, resource.offset, resource.length, std::move(sink),
                           std::move(done));
}

absl::Status DeviceResidency::Publish(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = placements_.find(id);
  if (it == placements_.end()) return absl::OkStatus();
  if (it->second.copy_failed) {
    return io::IoError(EIO, absl::StrCat("cuda: copying resource ", id, " to the device failed"));
  }
  offload::ResidencyEntry& e = EntryOf(id);
  e.address = reinterpret_cast<uint64_t>(arena_ + it->second.offset);
  e.length = it->second.length;
  std::atomic_ref<uint64_t>(e.key).store(offload::ResidencyKey(it->second.tenant, id),
                                         std::memory_order_release);
  return absl::OkStatus();
}

void DeviceResidency::Remove(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = placements_.find(id);
  if (it == placements_.end()) return;
  offload::ResidencyEntry& e = EntryOf(id);
  if (std::atomic_ref<uint64_t>(e.key).load(std::memory_order_relaxed) ==
      offload::ResidencyKey(it->second.tenant, id)) {
    std::atomic_ref<uint64_t>(e.key).store(0, std::memory_order_release);
  }
  owner_[id & params_.table_mask] = 0;
  FreeRange(it->second.offset, it->second.length);
  placements_.erase(it);
}

}  // namespace mk::engine::cuda
