#include "host/buffer_table.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mk::engine::host {

namespace pb = protocol::buffer;

absl::StatusOr<void*> HostBufferMemory::Allocate(uint64_t bytes) {
  void* data = std::calloc(1, bytes);
  if (data == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("buffer: the host has no ", bytes, " bytes of memory for a new buffer"));
  }
  return data;
}

void HostBufferMemory::Release(void* data, uint64_t) { std::free(data); }

absl::Status HostBufferMemory::CopyIn(void* dst, absl::Span<const char> src) {
  std::memcpy(dst, src.data(), src.size());
  return absl::OkStatus();
}

absl::Status HostBufferMemory::CopyOut(absl::Span<char> dst, const void* src) {
  std::memcpy(dst.data(), src, dst.size());
  return absl::OkStatus();
}

BufferTable::BufferTable(const Limits& limits, BufferMemory* memory, const PartitionedRing* ring)
    : limits_(limits),
      capacity_(std::min(limits.capacity, pb::kMaxBuffers)),
      memory_(memory),
      ring_(ring),
      descriptors_(std::make_unique<pb::Descriptor[]>(capacity_)),
      use_(limits.max_tenants) {}

BufferTable::~BufferTable() = default;

absl::Status BufferTable::CheckTenant(uint32_t tenant) const {
  if (tenant < limits_.max_tenants) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("buffer: tenant ", tenant,
                                                 " out of range; this engine serves tenants 0..",
                                                 limits_.max_tenants - 1));
}

absl::StatusOr<BufferInfo> BufferTable::Create(uint32_t tenant, uint64_t bytes) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (bytes == 0) {
    return absl::InvalidArgumentError("buffer: bytes is 0; a buffer holds at least one byte");
  }
  uint32_t index;
  std::vector<std::shared_ptr<Allocation>> released;  // destroyed after the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    SweepRetired(&released);
    TenantUse& use = use_[tenant];
    if (limits_.tenant_bytes != 0 &&
        (bytes > limits_.tenant_bytes || use.bytes > limits_.tenant_bytes - bytes)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "buffer: tenant ", tenant, " holds ", use.bytes, " bytes in ", use.buffers,
          " buffers and may hold ", limits_.tenant_bytes, " (--tenant_buffer_bytes); a buffer of ",
          bytes, " bytes does not fit: free buffers or create a smaller one (freed buffers count ",
          "until the slots published before the free are done)"));
    }
    if (limits_.max_per_tenant != 0 && use.buffers >= limits_.max_per_tenant) {
      return absl::ResourceExhaustedError(
          absl::StrCat("buffer: tenant ", tenant, " holds ", use.buffers, " buffers, the most ",
                       "one tenant may hold (--max_buffers_per_tenant); free one first"));
    }
    if (free_list_.empty() && entries_.size() >= capacity_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "buffer: all ", capacity_, " buffer handles of this engine are in use; retry later"));
    }
    // Counted before the allocation, so concurrent creates cannot overrun the quota together.
    use.bytes += bytes;
    ++use.buffers;
    if (free_list_.empty()) {
      index = static_cast<uint32_t>(entries_.size());
      entries_.emplace_back();
    } else {
      index = free_list_.back();
      free_list_.pop_back();
    }
    entries_[index].owner = kNoOwner - 1;  // reserved: not usable until the allocation lands
  }
  absl::StatusOr<void*> data = memory_->Allocate(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  Entry& entry = entries_[index];
  if (!data.ok()) {
    entry.owner = kNoOwner;
    free_list_.push_back(index);
    use_[tenant].bytes -= bytes;
    --use_[tenant].buffers;
    return data.status();
  }
  entry.owner = tenant;
  entry.generation = (entry.generation + 1) & pb::kGenerationMask;
  entry.allocation = std::make_shared<Allocation>(memory_, *data, bytes);
  const uint32_t handle = pb::MakeHandle(index, entry.generation);
  pb::Descriptor& d = descriptors_[index];
  d.owner = tenant;
  d.data = reinterpret_cast<uintptr_t>(*data);
  d.bytes = bytes;
  DescriptorHandle(index).store(handle, std::memory_order_release);  // executors may use it now
  return BufferInfo{handle, bytes};
}

absl::StatusOr<std::shared_ptr<BufferTable::Allocation>> BufferTable::Find(
    uint32_t tenant, uint32_t handle, uint64_t offset, uint64_t length, const char* verb) {
  const uint32_t index = pb::HandleIndex(handle);
  if (!pb::IsBufferHandle(handle) || index >= entries_.size() || entries_[index].owner != tenant ||
      entries_[index].generation != pb::HandleGeneration(handle)) {
    return absl::NotFoundError(absl::StrFormat(
        "buffer: handle 0x%08x is not a buffer of tenant %u (never created, freed, or "
        "another tenant's); list yours with ListBuffers",
        handle, tenant));
  }
  const std::shared_ptr<Allocation>& allocation = entries_[index].allocation;
  if (offset > allocation->bytes || length > allocation->bytes - offset) {
    return absl::OutOfRangeError(absl::StrFormat(
        "buffer: %s of %u bytes at offset %u runs past the end of buffer 0x%08x (%u bytes)", verb,
        length, offset, handle, allocation->bytes));
  }
  return allocation;
}

absl::Status BufferTable::Write(uint32_t tenant, uint32_t handle, uint64_t offset,
                                absl::Span<const char> bytes) {
  std::shared_ptr<Allocation> allocation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    absl::StatusOr<std::shared_ptr<Allocation>> found =
        Find(tenant, handle, offset, bytes.size(), "a write");
    if (!found.ok()) return found.status();
    allocation = *std::move(found);
  }
  if (bytes.empty()) return absl::OkStatus();
  return memory_->CopyIn(static_cast<char*>(allocation->data) + offset, bytes);
}

absl::Status BufferTable::Read(uint32_t tenant, uint32_t handle, uint64_t offset,
                               absl::Span<char> out) {
  std::shared_ptr<Allocation> allocation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    absl::StatusOr<std::shared_ptr<Allocation>> found =
        Find(tenant, handle, offset, out.size(), "a read");
    if (!found.ok()) return found.status();
    allocation = *std::move(found);
  }
  if (out.empty()) return absl::OkStatus();
  return memory_->CopyOut(out, static_cast<const char*>(allocation->data) + offset);
}

absl::Status BufferTable::Free(uint32_t tenant, uint32_t handle) {
  std::vector<std::shared_ptr<Allocation>> released;  // destroyed after the lock
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<std::shared_ptr<Allocation>> found = Find(tenant, handle, 0, 0, "a free");
  if (!found.ok()) return found.status();
  const uint32_t index = pb::HandleIndex(handle);
  DescriptorHandle(index).store(0, std::memory_order_release);  // no new resolve succeeds
  Entry& entry = entries_[index];
  --use_[tenant].buffers;      // its bytes count until the retirement ends
  entry.owner = kNoOwner - 1;  // retiring: neither usable nor free
  retired_.push_back(
      Retired{index, tenant, std::move(entry.allocation),
              ring_ != nullptr ? ring_->ReserveSnapshot() : PartitionedRing::Sequences{}});
  SweepRetired(&released);
  return absl::OkStatus();
}

void BufferTable::SweepRetired(std::vector<std::shared_ptr<Allocation>>* released) {
  for (size_t i = 0; i < retired_.size();) {
    Retired& r = retired_[i];
    if (ring_ != nullptr && !ring_->TailsPassed(r.published)) {
      ++i;
      continue;
    }
    use_[r.tenant].bytes -= r.allocation->bytes;
    entries_[r.index].owner = kNoOwner;
    free_list_.push_back(r.index);
    released->push_back(std::move(r.allocation));
    r = std::move(retired_.back());
    retired_.pop_back();
  }
}

size_t BufferTable::ReleaseRetired() {
  std::vector<std::shared_ptr<Allocation>> released;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (retired_.empty()) return 0;
    SweepRetired(&released);
  }
  return released.size();
}

std::vector<BufferInfo> BufferTable::List(uint32_t tenant) {
  std::vector<BufferInfo> out;
  std::vector<std::shared_ptr<Allocation>> released;  // destroyed after the lock
  std::lock_guard<std::mutex> lock(mu_);
  SweepRetired(&released);
  for (uint32_t i = 0; i < entries_.size(); ++i) {
    const Entry& entry = entries_[i];
    if (entry.owner == tenant && entry.allocation != nullptr) {
      out.push_back(BufferInfo{pb::MakeHandle(i, entry.generation), entry.allocation->bytes});
    }
  }
  return out;
}

uint64_t BufferTable::held_bytes(uint32_t tenant) {
  std::lock_guard<std::mutex> lock(mu_);
  return tenant < use_.size() ? use_[tenant].bytes : 0;
}

}  // namespace mk::engine::host
