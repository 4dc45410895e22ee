#include "host/resource_loader.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "host/tree_hash.h"
#include "mk/base/status_macros.h"

namespace mk::engine::host {

static_assert(kSharedResourceOwner == io::kSharedOwner);

namespace {

using protocol::ExecResult;
using protocol::FaultCode;

constexpr uint32_t kNoTag = UINT32_MAX;  // io request of a prefetch: no ring slot waits on it

ExecResult Waiting() {
  ExecResult r;
  r.status = protocol::SlotStatus::kWaitIo;
  return r;
}
ExecResult Requeue() {
  ExecResult r;
  r.status = protocol::SlotStatus::kRequeue;
  return r;
}
// DONE for LOAD_MISS: result0/1 = the resource's length in bytes.
ExecResult Loaded(uint64_t length) {
  ExecResult r = protocol::Done(2);
  r.results[0] = static_cast<uint32_t>(length);
  r.results[1] = static_cast<uint32_t>(length >> 32);
  return r;
}

absl::StatusOr<io::Backend> ParseIoBackend(const std::string& name) {
  if (name == "auto") return io::Backend::kAuto;
  if (name == "io_uring") return io::Backend::kUring;
  if (name == "threads") return io::Backend::kThreads;
  return absl::InvalidArgumentError(
      absl::StrCat("engine: io backend '", name, "' unknown; use auto, io_uring or threads"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ResourceLoader>> ResourceLoader::Create(
    const EngineOptions& options, PartitionedRing& ring, SlotReaper& reaper,
    const StoreFactory& make_store) {
  auto backend = ParseIoBackend(options.io_backend);
  if (!backend.ok()) return backend.status();
  if (options.io_queue_slots < protocol::io::kMinSlots) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: io_queue_slots ", options.io_queue_slots, " is below the protocol minimum of 64"));
  }
  auto root = io::RootDir::Create(options.resource_root);
  if (!root.ok()) return root.status();
  auto table = io::ResourceTable::Create(*root, options.max_resources_per_tenant);
  if (!table.ok()) return table.status();
  io::ReaderOptions ro;
  ro.backend = *backend;
  ro.o_direct = options.io_direct;
  ro.root = *root;  // every read is opened confined beneath the root, at read time
  auto reader = io::FileReader::Create(ro);
  if (!reader.ok()) return reader.status();
  std::unique_ptr<ResidencyStore> store;
  if (make_store == nullptr) {
    store = CreateHostResidency();
  } else {
    auto made = make_store(**reader);
    if (!made.ok()) return made.status();
    store = *std::move(made);
  }
  return std::unique_ptr<ResourceLoader>(new ResourceLoader(
      options, ring, reaper, *std::move(table), *std::move(reader), std::move(store)));
}

ResourceLoader::ResourceLoader(const EngineOptions& options, PartitionedRing& ring,
                               SlotReaper& reaper, std::unique_ptr<io::ResourceTable> table,
                               std::unique_ptr<io::FileReader> reader,
                               std::unique_ptr<ResidencyStore> store)
    : ring_(ring),
      reaper_(reaper),
      budget_bytes_(options.residency_budget_bytes),
      owner_budget_bytes_(
          options.tenant_residency_bytes == 0
              ? options.residency_budget_bytes
              : std::min(options.tenant_residency_bytes, options.residency_budget_bytes)),
      table_(std::move(table)),
      io_words_(size_t{options.io_queue_slots} * protocol::io::kSlotWords, 0),
      io_queue_(*IoQueueView::Create(absl::MakeSpan(io_words_))),
      reader_(std::move(reader)),
      store_(std::move(store)) {
  stats_.backend = reader_->backend_name();
  pump_ = std::thread([this] { PumpLoop(); });
}

ResourceLoader::~ResourceLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_.notify_all();
  pump_.join();
  {
    std::unique_lock<std::mutex> lock(mu_);
    reads_done_.wait(lock, [this] { return reads_in_flight_ == 0; });
  }
  store_.reset();
  reader_.reset();
}

uint64_t ResourceLoader::MarkWaiting(uint32_t slot_index) {
  ring_.MoveStatus(slot_index, protocol::SlotStatus::kClaimed, protocol::SlotStatus::kWaitIo,
                   Actor::kEngine);
  return ring_.meta(slot_index).ticket.load(std::memory_order_relaxed);
}

protocol::IoHook ResourceLoader::Hook() {
  protocol::IoHook hook;
  hook.context = this;
  hook.load_miss = [](void* ctx, uint32_t slot, uint32_t tenant, const uint32_t* args) {
    return static_cast<ResourceLoader*>(ctx)->LoadMiss(slot, tenant, args);
  };
  hook.checksum = [](void* ctx, uint32_t slot, uint32_t tenant, const uint32_t* args) {
    return static_cast<ResourceLoader*>(ctx)->Checksum(slot, tenant, args);
  };
  return hook;
}

absl::StatusOr<io::Resource> ResourceLoader::Owned(uint32_t tenant, uint32_t id) const {
  auto r = table_->Lookup(id);
  if (!r.ok() || (r->tenant != tenant && r->tenant != io::kSharedOwner)) {
    return absl::NotFoundError(absl::StrCat("engine: tenant ", tenant, " has no resource ", id));
  }
  return r;
}

void ResourceLoader::DropLocked(std::map<uint32_t, Resident>::iterator it) {
  used_bytes_ -= it->second.reserved;
  if (auto owner = used_by_owner_.find(it->second.owner); owner != used_by_owner_.end()) {
    owner->second -= it->second.reserved;
    if (owner->second == 0) used_by_owner_.erase(owner);
  }
  store_->Remove(it->first);
  resident_.erase(it);
}

uint64_t ResourceLoader::OwnerUsedLocked(uint32_t owner) const {
  auto it = used_by_owner_.find(owner);
  return it == used_by_owner_.end() ? 0 : it->second;
}

bool ResourceLoader::OwnerBusyLocked(uint32_t owner) const {
  for (const auto& [id, r] : resident_) {
    if (r.owner == owner && (r.loading || PinnedLocked(id))) return true;
  }
  return false;
}

bool ResourceLoader::MakeRoomLocked(uint32_t id, uint32_t owner, uint64_t bytes) {
  // Only the owner's own copies are candidates: one tenant's loads never evict another's.
  auto evictable = [this, owner](std::map<uint32_t, Resident>::iterator it) {
    return it != resident_.end() && it->second.owner == owner && !it->second.loading &&
           !PinnedLocked(it->first);
  };
  auto over_budget = [&] {
    return used_bytes_ + bytes > budget_bytes_ ||
           OwnerUsedLocked(owner) + bytes > owner_budget_bytes_;
  };
  while (over_budget() || !store_->Place(id, owner, bytes)) {
    // The store's own obstacle first (a device table entry held by another resource): evicting
    // it is what helps, and it needs no scan.
    auto victim = resident_.end();
    if (!over_budget()) {
      if (auto holder = store_->Obstacle(id); holder.has_value()) {
        auto it = resident_.find(*holder);
        // Another owner's copy (never evicted for this load), or one in use: no room now.
        if (!evictable(it)) return false;
        victim = it;
      }
    }
    if (victim == resident_.end()) {  // least recently used (a scan: evictions are rare)
      for (auto it = resident_.begin(); it != resident_.end(); ++it) {
        if (!evictable(it)) continue;
        if (victim == resident_.end() || it->second.last_use < victim->second.last_use) victim = it;
      }
    }
    if (victim == resident_.end()) return false;
    DropLocked(victim);
    ++stats_.evictions;
  }
  return true;
}

void ResourceLoader::Pin(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  ++pins_[id];
}

void ResourceLoader::Unpin(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pins_.find(id);
  if (it == pins_.end()) return;
  if (--it->second == 0) pins_.erase(it);
  if (auto r = resident_.find(id); r != resident_.end()) r->second.last_use = ++clock_;
}

void ResourceLoader::ReleaseAllPins() {
  std::lock_guard<std::mutex> lock(mu_);
  pins_.clear();
}

void ResourceLoader::CountExecutorHit(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.load_misses;
  if (auto r = resident_.find(id); r != resident_.end()) r->second.last_use = ++clock_;
}

absl::Status ResourceLoader::ForgetResidents(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool idle = reads_done_.wait_for(
      lock, absl::ToChronoNanoseconds(std::max(absl::ZeroDuration(), deadline - absl::Now())),
      [this] { return reads_in_flight_ == 0; });
  if (!idle) {
    return absl::DeadlineExceededError(
        absl::StrCat("engine: ", reads_in_flight_,
                     " resource loads still in flight; their resources stay "
                     "marked as loading"));
  }
  // Requests still waiting for room in the io queue were placed in the store being reset: they
  // fail (their slots fault IO_ERROR ECANCELED) and a later LOAD_MISS loads them again.
  std::vector<Waiter> cancelled;
  for (const IoRequest& request : overflow_) {
    auto it = resident_.find(request.resource_id);
    if (it == resident_.end()) continue;
    for (const Waiter& w : it->second.waiters) cancelled.push_back(w);
    DropLocked(it);
  }
  overflow_.clear();
  for (auto it = resident_.begin(); it != resident_.end();) {
    auto next = std::next(it);
    if (!it->second.loading) DropLocked(it);
    it = next;
  }
  pins_.clear();
  lock.unlock();
  if (!cancelled.empty()) {
    CompletionBatcher batcher = reaper_.NewBatcher();
    const ExecResult outcome = protocol::Fault(FaultCode::kIoError, ECANCELED);
    for (const Waiter& w : cancelled) reaper_.ResumeWaiting(w.index, w.ticket, outcome, &batcher);
  }
  return absl::OkStatus();
}

ExecResult ResourceLoader::LoadMiss(uint32_t slot_index, uint32_t tenant, const uint32_t* args) {
  const uint32_t id = args[0];
  const bool prefetch = args[1] != 0;
  auto resource = Owned(tenant, id);
  std::unique_lock<std::mutex> lock(mu_);
  ++stats_.load_misses;
  if (!resource.ok()) return protocol::Fault(FaultCode::kResourceNotFound, id);
  const uint32_t owner = resource->tenant;
  auto it = resident_.find(id);
  if (it != resident_.end()) {
    Resident& r = it->second;
    r.last_use = ++clock_;
    if (!r.loading) return Loaded(resource->length);
    ++stats_.coalesced;
    if (prefetch) return Loaded(resource->length);
    r.waiters.push_back({slot_index, MarkWaiting(slot_index)});
    return Waiting();
  }
  if (resource->length > owner_budget_bytes_) {
    return protocol::Fault(FaultCode::kResourceExhausted, id);  // can never fit
  }
  if (!MakeRoomLocked(id, owner, resource->length)) {
    // The owner's own copies are loading or being read: retry once they are done. Nothing of
    // the owner's is in the way, so only other tenants' copies fill the budget: they are not
    // evicted for this load, which faults instead of waiting for them.
    if (!OwnerBusyLocked(owner)) return protocol::Fault(FaultCode::kResourceExhausted, id);
    ++stats_.requeued;
    return Requeue();
  }
  IoRequest request;
  request.resource_id = id;
  request.residency = id;
  request.byte_count = static_cast<uint32_t>(std::min<uint64_t>(resource->length, UINT32_MAX));
  request.tag = prefetch ? kNoTag : slot_index;
  Resident& r = resident_[id];
  r.owner = owner;
  r.last_use = ++clock_;
  r.reserved = resource->length;  // budget held now; the bytes arrive with the read
  used_bytes_ += r.reserved;
  used_by_owner_[owner] += r.reserved;
  // The read cannot finish before mu_ is released (FinishRead takes the waiters under it), so
  // the slot is marked waiting in time.
  if (!prefetch) r.waiters.push_back({slot_index, MarkWaiting(slot_index)});
  auto io_slot = io_queue_.Publish(request, io_hint_.fetch_add(1, std::memory_order_relaxed));
  if (!io_slot.ok()) {
    // The io queue is full: the request waits in the loader (bounded by the ring: each holds a
    // waiting slot or is a prefetch of a resource not yet resident) and the pump publishes it
    // when a read finishes; the slot sleeps in WAIT_IO instead of spinning through REQUEUE.
    overflow_.push_back(request);
    ++stats_.io_queue_full;
    return prefetch ? Loaded(resource->length) : Waiting();
  }
  lock.unlock();
  // The CPU engine's worker is a host thread: it serves the request it just published at once
  // (one thread hop fewer). Claims are exactly-once, so the pump thread stays a safe backstop.
  StartRead(*io_slot);
  return prefetch ? Loaded(resource->length) : Waiting();
}

ExecResult ResourceLoader::Checksum(uint32_t, uint32_t tenant, const uint32_t* args) {
  const uint32_t id = args[0];
  const uint64_t offset = uint64_t{args[1]} | uint64_t{args[2]} << 32;
  uint64_t length = args[3];
  if (!Owned(tenant, id).ok()) return protocol::Fault(FaultCode::kResourceNotFound, id);
  absl::Span<const uint8_t> bytes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = resident_.find(id);
    if (it == resident_.end() || it->second.loading) {
      return protocol::Fault(FaultCode::kResourceNotFound, id);
    }
    bytes = store_->HostBytes(id);
    const uint64_t size = bytes.size();
    if (length == 0 && offset <= size) length = size - offset;  // 0: to the end
    if (offset > size || length > size - offset) {
      return protocol::Fault(FaultCode::kOutOfBounds, id);
    }
    ++pins_[id];  // not evicted while hashed
    it->second.last_use = ++clock_;
  }
  const TreeHashResult h = TreeHash(bytes.subspan(offset, length));
  hashed_bytes_.fetch_add(length, std::memory_order_relaxed);
  Unpin(id);
  ExecResult out = protocol::Done(3);
  out.results[0] = static_cast<uint32_t>(h.root);
  out.results[1] = static_cast<uint32_t>(h.root >> 32);
  out.results[2] = h.blocks;
  return out;
}

absl::Status ResourceLoader::ReadResident(uint32_t tenant, uint32_t id, uint64_t offset,
                                          absl::Span<char> out) {
  MK_RETURN_IF_ERROR(Owned(tenant, id).status());
  absl::Span<const uint8_t> bytes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = resident_.find(id);
    if (it == resident_.end() || it->second.loading) {
      return absl::FailedPreconditionError(absl::StrCat(
          "engine: resource ", id, " is not resident; load it first (LOAD_MISS), then read it"));
    }
    bytes = store_->HostBytes(id);
    if (bytes.empty() && it->second.reserved != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("engine: resource ", id, " is resident in device memory, which cannot ",
                       "be read back yet (docs/buffers.md)"));
    }
    if (offset > bytes.size() || out.size() > bytes.size() - offset) {
      return absl::OutOfRangeError(absl::StrCat(
          "engine: a read of ", out.size(), " bytes at offset ", offset,
          " runs past the end of resource ", id, " (", bytes.size(), " bytes resident)"));
    }
    ++pins_[id];  // not evicted while copied
    it->second.last_use = ++clock_;
  }
  if (!out.empty()) std::memcpy(out.data(), bytes.data() + offset, out.size());
  Unpin(id);
  return absl::OkStatus();
}

void ResourceLoader::PumpLoop() {
  std::vector<uint32_t> published;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    lock.unlock();
    io_queue_.Poll(&published);
    for (uint32_t io_index : published) StartRead(io_index);
    lock.lock();
    if (stop_) return;
    if (!published.empty() || PublishOverflowLocked()) continue;
    // Workers publish under mu_, so a poll under it cannot miss a request whose notification
    // came before this wait.
    io_queue_.Poll(&published);
    if (published.empty()) work_.wait(lock);
  }
}

void ResourceLoader::StartRead(uint32_t io_index) {
  auto request = io_queue_.Claim(io_index);  // exactly once
  if (!request.ok()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++reads_in_flight_;  // until FinishRead, whichever way this read ends
    if (hold_reads_) {
      held_reads_.push_back({io_index, request->resource_id});
      return;
    }
  }
  BeginRead(io_index, request->resource_id);
}

void ResourceLoader::HoldReads(bool hold) {
  std::vector<std::pair<uint32_t, uint32_t>> release;
  {
    std::lock_guard<std::mutex> lock(mu_);
    hold_reads_ = hold;
    if (!hold) release.swap(held_reads_);
  }
  for (const auto& [io_index, id] : release) BeginRead(io_index, id);
}

void ResourceLoader::BeginRead(uint32_t io_index, uint32_t id) {
  const uint64_t start_ns = NowNs();
  auto resource = table_->Lookup(id);
  if (!resource.ok()) {
    FinishRead(io_index, id, io::IoError(ENOENT, "resource evicted"), start_ns);
    return;
  }
  absl::Status s = store_->Fill(id, *resource, *reader_,
                                [this, io_index, id, start_ns](absl::Status st, uint64_t) {
                                  FinishRead(io_index, id, std::move(st), start_ns);
                                });
  if (!s.ok()) FinishRead(io_index, id, s, start_ns);
}

void ResourceLoader::FinishRead(uint32_t io_index, uint32_t resource_id, absl::Status status,
                                uint64_t start_ns) {
  if (status.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    status = store_->Publish(resource_id);
  }
  const int error_number = status.ok() ? 0 : std::max(1, io::ErrnoOf(status));
  io_queue_.Complete({io_index, status.ok(), static_cast<uint32_t>(error_number)}).IgnoreError();
  std::vector<Waiter> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    io_latency_.Add(NowNs() - start_ns);
    auto it = resident_.find(resource_id);
    if (it != resident_.end()) {
      waiters.swap(it->second.waiters);
      if (status.ok()) {
        it->second.loading = false;
        ++stats_.requests_ok;
        stats_.bytes += it->second.reserved;
      } else {
        DropLocked(it);  // a later LOAD_MISS tries again
        ++stats_.requests_error;
      }
    } else if (!status.ok()) {
      ++stats_.requests_error;
    }
  }
  const auto resource = table_->Lookup(resource_id);
  const ExecResult outcome =
      status.ok() ? Loaded(resource.ok() ? resource->length : 0)
                  : protocol::Fault(FaultCode::kIoError, static_cast<uint32_t>(error_number));
  {
    CompletionBatcher batcher = reaper_.NewBatcher();
    for (const Waiter& w : waiters) reaper_.ResumeWaiting(w.index, w.ticket, outcome, &batcher);
  }
  io_queue_.Recycle(io_index).IgnoreError();
  std::lock_guard<std::mutex> lock(mu_);
  if (--reads_in_flight_ == 0) reads_done_.notify_all();
  if (!overflow_.empty()) work_.notify_one();  // an io slot is free for a waiting request
}

bool ResourceLoader::PublishOverflowLocked() {
  bool any = false;
  while (!overflow_.empty()) {
    auto io_slot =
        io_queue_.Publish(overflow_.front(), io_hint_.fetch_add(1, std::memory_order_relaxed));
    if (!io_slot.ok()) break;
    overflow_.pop_front();
    any = true;
  }
  return any;
}

absl::StatusOr<uint32_t> ResourceLoader::Register(uint32_t tenant, const std::string& path,
                                                  uint64_t offset, uint64_t length) {
  return table_->Register(tenant, path, offset, length);
}

std::vector<ResourceInfo> ResourceLoader::List(uint32_t tenant) {
  std::vector<ResourceInfo> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const io::Resource& r : table_->List()) {
    if (r.tenant != tenant && r.tenant != io::kSharedOwner) continue;
    auto it = resident_.find(r.id);
    out.push_back(ResourceInfo{r.id, r.tenant, r.path, r.offset, r.length,
                               it != resident_.end() && !it->second.loading});
  }
  return out;
}

absl::Status ResourceLoader::Evict(uint32_t tenant, uint32_t resource_id) {
  auto owned = Owned(tenant, resource_id);
  if (!owned.ok()) return owned.status();
  if (owned->tenant != tenant) {
    return absl::PermissionDeniedError(absl::StrCat(
        "engine: resource ", resource_id, " is shared; only the admin evicts shared resources"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = resident_.find(resource_id);
  if (it != resident_.end()) {
    if (it->second.loading || PinnedLocked(resource_id)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "engine: resource ", resource_id, " is loading or being read; evict it afterwards"));
    }
    DropLocked(it);
  }
  return table_->Remove(resource_id);
}

void ResourceLoader::Stats(IoStats* out) {
  std::lock_guard<std::mutex> lock(mu_);
  *out = stats_;
  out->latency = io_latency_;
  out->resident_bytes = used_bytes_;
  out->resident_resources = 0;
  out->loading_resources = 0;
  for (const auto& [id, r] : resident_) {
    ++(r.loading ? out->loading_resources : out->resident_resources);
  }
  out->registered_resources = table_->size();
}

}  // namespace mk::engine::host
