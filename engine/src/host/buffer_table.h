// BufferTable: tenant buffers (docs/buffers.md). A tenant creates a buffer of N bytes, writes
// and reads byte ranges of it, lists and frees its buffers; each buffer is named by a handle
// (protocol::buffer) that only its owner can use: every other tenant's use is NOT_FOUND with
// the same message as a handle that never existed, so handles reveal nothing about others.
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
    uint32_t capacity = 1u << 16;        // buffers in all (at most protocol::buffer::kMaxBuffers)
    uint32_t max_per_tenant = 1024;      // buffers one tenant may hold (0: no limit)
    uint64_t tenant_bytes = 1ull << 30;  // bytes one tenant may hold (0: no limit)
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
  std::vector<BufferInfo> List(uint32_t tenant);
  // Bytes `tenant` holds in buffers (retired ones not yet released included).
  uint64_t held_bytes(uint32_t tenant);
  // Releases the retired allocations no slot can use any more; returns how many.
  size_t ReleaseRetired();

  // The executors' view (ExecContext::buffers / buffer_count).
  const protocol::buffer::Descriptor* descriptors() const { return descriptors_.get(); }
  uint32_t capacity() const { return capacity_; }

 private:
  // One allocation, released when the last reference (the entry's, a copy's) goes.
  struct Allocation {
    Allocation(BufferMemory* memory, void* data, uint64_t bytes)
        : memory(memory), data(data), bytes(bytes) {}
    ~Allocation() { memory->Release(data, bytes); }
    BufferMemory* const memory;
    void* const data;
    const uint64_t bytes;
  };
  struct Entry {
    uint32_t owner = kNoOwner;
    uint32_t generation = 0;
    std::shared_ptr<Allocation> allocation;
  };
  static constexpr uint32_t kNoOwner = UINT32_MAX;

  // The allocation `handle` names for `tenant`, checked against [offset, offset + length);
  // `verb` names the operation in errors (needs mu_).
  absl::StatusOr<std::shared_ptr<Allocation>> Find(uint32_t tenant, uint32_t handle,
                                                   uint64_t offset, uint64_t length,
                                                   const char* verb);
  absl::Status CheckTenant(uint32_t tenant) const;
  // Moves the retired allocations whose slots are gone to `released` (destroyed by the caller
  // after unlocking) and their entries to the free list (needs mu_).
  void SweepRetired(std::vector<std::shared_ptr<Allocation>>* released);
  std::atomic_ref<uint32_t> DescriptorHandle(uint32_t index) {
    return std::atomic_ref<uint32_t>(descriptors_[index].handle);
  }

  const Limits limits_;
  const uint32_t capacity_;
  BufferMemory* const memory_;
  const PartitionedRing* const ring_;
  // capacity_ entries, zeroed; written under mu_, read by executors without it.
  const std::unique_ptr<protocol::buffer::Descriptor[]> descriptors_;
  struct Retired {
    uint32_t index;
    uint32_t tenant;
    std::shared_ptr<Allocation> allocation;
    PartitionedRing::Sequences published;  // the ring's reservations at the free
  };
  std::vector<Retired> retired_;  // guarded by mu_
  std::mutex mu_;
  std::vector<Entry> entries_;       // guarded by mu_
  std::vector<uint32_t> free_list_;  // unused entries; guarded by mu_
  struct TenantUse {
    uint64_t bytes = 0;
    uint32_t buffers = 0;
  };
  std::vector<TenantUse> use_;  // by tenant; guarded by mu_
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_BUFFER_TABLE_H_
