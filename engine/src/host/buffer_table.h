// BufferTable: tenant buffers (docs/buffers.md). A tenant creates a buffer of N bytes, writes
// and reads byte ranges of it, lists and frees its buffers; each buffer is named by a handle
// (protocol::buffer) that only its owner can use: every other tenant's use is NOT_FOUND with
// the same message as a handle that never existed.
//
// Memory comes from a BufferMemory: host memory on the CPU engine, device memory on the CUDA
// engine. New buffers are zero-filled (never another tenant's old bytes). Each tenant holds at
// most `tenant_bytes` bytes in at most `max_per_tenant` buffers.
//
// Executors resolve handles through a fixed array of protocol::buffer::Descriptor (descriptors(),
// no lock): Create fills an entry and stores its handle last; Free clears the handle first, so
// a slot resolving the handle afterwards faults, and retires the allocation: it is released,
// and the entry reused, only once every slot published before the free has left the ring (the
// ring's tails passed a snapshot of its reservations), so a view an executor resolved before
// the free stays valid while it runs. Retired bytes count against their tenant until released.
//
// Thread safety: every method may be called from any thread. One mutex guards the entries; the
// host copies run outside it, on a reference to the allocation, so a Free during a Read or
// Write releases the memory only when the copy is over. Lifetime: the table outlives its users
// and the executors; the memory and the ring outlive the table.
#ifndef MK_ENGINE_SRC_HOST_BUFFER_TABLE_H_
#define MK_ENGINE_SRC_HOST_BUFFER_TABLE_H_

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "host/partitioned_ring.h"
#include "mk/engine/engine.h"

namespace mk::engine::host {

// Where buffer bytes live. Implementations are thread-safe.
class BufferMemory {
 public:
  virtual ~BufferMemory() = default;
  // `bytes` zero-filled bytes, or RESOURCE_EXHAUSTED.
  virtual absl::StatusOr<void*> Allocate(uint64_t bytes) = 0;
  virtual void Release(void* data, uint64_t bytes) = 0;
  virtual absl::Status CopyIn(void* dst, absl::Span<const char> src) = 0;
  virtual absl::Status CopyOut(absl::Span<char> dst, const void* src) = 0;
};

// Host memory (the CPU engine's buffers).
class HostBufferMemory final : public BufferMemory {
 public:
  absl::StatusOr<void*> Allocate(uint64_t bytes) override;
  void Release(void* data, uint64_t bytes) override;
  absl::Status CopyIn(void* dst, absl::Span<const char> src) override;
  absl::Status CopyOut(absl::Span<char> dst, const void* src) override;
};

class BufferTable {
 public:
  struct Limits {
    uint32_t max_tenants = 1024;
    // Buffers one tenant may hold, freed ones still retiring included (0: no limit, and then
    // one tenant may take every handle). The table has max_tenants x this many entries (at
    // most protocol::buffer::kMaxBuffers), so no tenant can use up another's.
    uint32_t max_per_tenant = 1024;
    uint64_t tenant_bytes = 1ull << 30;  // bytes one tenant may hold (0: no limit)
    uint64_t total_bytes = 0;            // bytes all tenants may hold together (0: no limit)
  };
  // `ring`: whose slots may use the buffers (null: none do; frees release at once).
  BufferTable(const Limits& limits, BufferMemory* memory, const PartitionedRing* ring);
  ~BufferTable();
  BufferTable(const BufferTable&) = delete;
  BufferTable& operator=(const BufferTable&) = delete;

  absl::StatusOr<BufferInfo> Create(uint32_t tenant, uint64_t bytes);
  absl::Status Write(uint32_t tenant, uint32_t handle, uint64_t offset,
                     absl::Span<const char> bytes);
  absl::Status Read(uint32_t tenant, uint32_t handle, uint64_t offset, absl::Span<char> out);
  absl::Status Free(uint32_t tenant, uint32_t handle);
  absl::StatusOr<std::vector<BufferInfo>> List(uint32_t tenant);
  // Bytes `tenant` holds in buffers (retiring ones included).
  uint64_t held_bytes(uint32_t tenant);
  // Releases the retired allocations no slot can use any more; returns how many.
  size_t ReleaseRetired();

  // The executors' view (ExecContext::buffers / buffer_count).
  const protocol::buffer::Descriptor* descriptors() const { return descriptors_.get(); }
  uint32_t capacity() const { return capacity_; }

 private:
  // One allocation, released when the last reference (the entry's, a host copy's) goes.
  struct Allocation {
    Allocation(BufferMemory* memory, void* data, uint64_t bytes)
        : memory(memory), data(data), bytes(bytes) {}
    ~Allocation() { memory->Release(data, bytes); }
    BufferMemory* const memory;
    void* const data;
    const uint64_t bytes;
  };
  enum class State : uint8_t { kFree, kReserved, kLive, kRetiring };
  struct Entry {
    State state = State::kFree;
    uint32_t owner = 0;
    uint32_t generation = 0;
    std::shared_ptr<Allocation> allocation;
  };
  struct Retired {
    uint32_t index;
    uint32_t tenant;
    std::shared_ptr<Allocation> allocation;
    PartitionedRing::Sequences published;  // the ring's reservations at the free
  };
  struct TenantUse {
    uint64_t bytes = 0;
    uint32_t buffers = 0;
  };
  struct FreeDescriptors {
    void operator()(protocol::buffer::Descriptor* d) const { std::free(d); }
  };

  // The allocation `handle` names for `tenant`, checked against [offset, offset + length);
  // `verb` names the operation in errors (needs mu_).
  absl::StatusOr<std::shared_ptr<Allocation>> Find(uint32_t tenant, uint32_t handle,
                                                   uint64_t offset, uint64_t length,
                                                   const char* verb);
  absl::Status CheckTenant(uint32_t tenant) const;
  absl::Status CheckQuota(uint32_t tenant, uint64_t bytes) const;  // needs mu_
  // Releases the retirements (oldest first) whose slots are gone: their allocations move to
  // `released` (destroyed by the caller after unlocking), their entries to the free list
  // (needs mu_).
  void SweepRetired(std::vector<std::shared_ptr<Allocation>>* released);
  std::atomic_ref<uint32_t> DescriptorHandle(uint32_t index) {
    return std::atomic_ref<uint32_t>(descriptors_[index].handle);
  }

  const Limits limits_;
  const uint32_t capacity_;
  BufferMemory* const memory_;
  const PartitionedRing* const ring_;
  // capacity_ entries, zeroed (calloc: pages are touched as entries are used); written under
  // mu_, read by executors without it (protocol::buffer::Descriptor says how).
  const std::unique_ptr<protocol::buffer::Descriptor[], FreeDescriptors> descriptors_;
  std::mutex mu_;
  std::vector<Entry> entries_;     // guarded by mu_; grows up to capacity_
  std::deque<uint32_t> free_;      // free entries, oldest first (reused last); guarded by mu_
  std::deque<Retired> retired_;    // in the order of their frees; guarded by mu_
  std::vector<TenantUse> use_;     // by tenant; guarded by mu_
  uint64_t total_bytes_ = 0;       // guarded by mu_
  uint32_t next_generation_seed_;  // guarded by mu_: first generations are not predictable
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_BUFFER_TABLE_H_
