#include "host/buffer_table.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mk/base/status_macros.h"

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

namespace {
uint32_t TableCapacity(const BufferTable::Limits& limits) {
  if (limits.max_per_tenant == 0) return pb::kMaxBuffers;
  return static_cast<uint32_t>(
      std::min<uint64_t>(pb::kMaxBuffers, uint64_t{limits.max_tenants} * limits.max_per_tenant));
}
}  // namespace

BufferTable::BufferTable(const Limits& limits, BufferMemory* memory, const PartitionedRing* ring)
    : limits_(limits),
      capacity_(TableCapacity(limits)),
      memory_(memory),
      ring_(ring),
      descriptors_(static_cast<pb::Descriptor*>(std::calloc(capacity_, sizeof(pb::Descriptor)))),
      use_(limits.max_tenants),
      next_generation_seed_(static_cast<uint32_t>(std::random_device{}())) {
  if (descriptors_ == nullptr) std::abort();  // 32 bytes per entry, lazily touched
}

BufferTable::~BufferTable() = default;

absl::Status BufferTable::CheckTenant(uint32_t tenant) const {
  if (tenant < limits_.max_tenants) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("buffer: tenant ", tenant,
                                                 " out of range; this engine serves tenants 0..",
                                                 limits_.max_tenants - 1));
}

absl::Status BufferTable::CheckQuota(uint32_t tenant, uint64_t bytes) const {
  const TenantUse& use = use_[tenant];
  constexpr const char* kRetiringNote =
      " (freed buffers count until the slots published before the free are done)";
  if (limits_.tenant_bytes != 0 &&
      (bytes > limits_.tenant_bytes || use.bytes > limits_.tenant_bytes - bytes)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "buffer: tenant ", tenant, " holds ", use.bytes, " bytes in ", use.buffers,
        " buffers and may hold ", limits_.tenant_bytes, " (--tenant_buffer_bytes); a buffer of ",
        bytes, " bytes does not fit: free buffers or create a smaller one", kRetiringNote));
  }
  if (limits_.max_per_tenant != 0 && use.buffers >= limits_.max_per_tenant) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "buffer: tenant ", tenant, " holds ", use.buffers, " buffers, the most one tenant may ",
        "hold (--max_buffers_per_tenant); free one first", kRetiringNote));
  }
  if (limits_.total_bytes != 0 &&
      (bytes > limits_.total_bytes || total_bytes_ > limits_.total_bytes - bytes)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("buffer: the engine's buffers hold ", total_bytes_, " of ",
                     limits_.total_bytes, " bytes (--buffer_budget_bytes); a buffer of ", bytes,
                     " bytes does not fit now: retry later or create a smaller one"));
  }
  if (free_.empty() && entries_.size() >= capacity_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "buffer: all ", capacity_, " buffer handles of this engine are in use; retry later"));
  }
  return absl::OkStatus();
}

absl::StatusOr<BufferInfo> BufferTable::Create(uint32_t tenant, uint64_t bytes) {
  MK_RETURN_IF_ERROR(CheckTenant(tenant));
  if (bytes == 0) {
    return absl::InvalidArgumentError("buffer: bytes is 0; a buffer holds at least one byte");
  }
  uint32_t index;
  std::vector<std::shared_ptr<Allocation>> released;  // destroyed after the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    SweepRetired(&released);
    MK_RETURN_IF_ERROR(CheckQuota(tenant, bytes));
    // Counted before the allocation, so concurrent creates cannot overrun the quotas together.
    use_[tenant].bytes += bytes;
    ++use_[tenant].buffers;
    total_bytes_ += bytes;
    if (free_.empty()) {
      index = static_cast<uint32_t>(entries_.size());
      entries_.emplace_back();
      next_generation_seed_ = next_generation_seed_ * 1664525u + 1013904223u;
      entries_[index].generation = next_generation_seed_ >> 21;
    } else {
      index = free_.front();
      free_.pop_front();
    }
    entries_[index].state = State::kReserved;  // not usable until the allocation lands
  }
  absl::StatusOr<void*> data = memory_->Allocate(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  Entry& entry = entries_[index];
  if (!data.ok()) {
    entry.state = State::kFree;
    free_.push_back(index);
    use_[tenant].bytes -= bytes;
    --use_[tenant].buffers;
    total_bytes_ -= bytes;
    return data.status();
  }
  entry.state = State::kLive;
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
  if (!pb::IsBufferHandle(handle) || index >= entries_.size() ||
      entries_[index].state != State::kLive || entries_[index].owner != tenant ||
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
  MK_RETURN_IF_ERROR(CheckTenant(tenant));
  std::shared_ptr<Allocation> allocation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    MK_ASSIGN_OR_RETURN(allocation, Find(tenant, handle, offset, bytes.size(), "a write"));
  }
  if (bytes.empty()) return absl::OkStatus();
  return memory_->CopyIn(static_cast<char*>(allocation->data) + offset, bytes);
}

absl::Status BufferTable::Read(uint32_t tenant, uint32_t handle, uint64_t offset,
                               absl::Span<char> out) {
  MK_RETURN_IF_ERROR(CheckTenant(tenant));
  std::shared_ptr<Allocation> allocation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    MK_ASSIGN_OR_RETURN(allocation, Find(tenant, handle, offset, out.size(), "a read"));
  }
  if (out.empty()) return absl::OkStatus();
  return memory_->CopyOut(out, static_cast<const char*>(allocation->data) + offset);
}

absl::Status BufferTable::Free(uint32_t tenant, uint32_t handle) {
  MK_RETURN_IF_ERROR(CheckTenant(tenant));
  std::vector<std::shared_ptr<Allocation>> released;  // destroyed after the lock
  std::lock_guard<std::mutex> lock(mu_);
  MK_RETURN_IF_ERROR(Find(tenant, handle, 0, 0, "a free").status());
  const uint32_t index = pb::HandleIndex(handle);
  DescriptorHandle(index).store(0, std::memory_order_release);  // no new resolve succeeds
  Entry& entry = entries_[index];
  entry.state = State::kRetiring;  // its bytes and its entry count until released
  retired_.push_back(
      Retired{index, tenant, std::move(entry.allocation),
              ring_ != nullptr ? ring_->ReserveSnapshot() : PartitionedRing::Sequences{}});
  SweepRetired(&released);
  return absl::OkStatus();
}

void BufferTable::SweepRetired(std::vector<std::shared_ptr<Allocation>>* released) {
  // Frees happen in order under mu_ and each snapshot is at least the one before, so the first
  // retirement still waiting ends the sweep.
  while (!retired_.empty() &&
         (ring_ == nullptr || ring_->TailsPassed(retired_.front().published))) {
    Retired& r = retired_.front();
    use_[r.tenant].bytes -= r.allocation->bytes;
    --use_[r.tenant].buffers;
    total_bytes_ -= r.allocation->bytes;
    entries_[r.index].state = State::kFree;
    free_.push_back(r.index);
    released->push_back(std::move(r.allocation));
    retired_.pop_front();
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

absl::StatusOr<std::vector<BufferInfo>> BufferTable::List(uint32_t tenant) {
  MK_RETURN_IF_ERROR(CheckTenant(tenant));
  std::vector<BufferInfo> out;
  std::vector<std::shared_ptr<Allocation>> released;  // destroyed after the lock
  std::lock_guard<std::mutex> lock(mu_);
  SweepRetired(&released);
  for (uint32_t i = 0; i < entries_.size(); ++i) {
    const Entry& entry = entries_[i];
    if (entry.state == State::kLive && entry.owner == tenant) {
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
