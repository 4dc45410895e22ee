// ResourceLoader: LOAD_MISS and CHECKSUM for an engine (docs/protocol.md, "Io queue and
// LOAD_MISS").
//
// A worker's LOAD_MISS either finds the resource resident (DONE), joins a load already under
// way (WAIT_IO, coalesced: one read per resource however many slots miss), or starts one: it
// reserves residency budget (evicting least-recently-used unpinned resources), publishes an io
// request into the io queue with a compare-and-swap, and leaves its ring slot in WAIT_IO. When
// the io queue is full the request waits in the loader's overflow list (the slot still sleeps in
// WAIT_IO) until a read finishes and the pump publishes it. The publishing worker
// then serves the request itself (it is a host thread); the pump thread serves whatever is
// left (a request is claimed exactly once, by either), resolves the resource through the table and
// reads it with the io reader; the read's completion writes OK or ERROR into the io slot, resumes
// every waiting ring slot (DONE, or FAULT IO_ERROR with the errno), reaps them and recycles the io
// slot.
//
// Residency is owned: each resident copy belongs to its resource's owner (a tenant, or the
// shared folder's owner), each owner may hold at most tenant_residency_bytes, and a load only
// ever evicts copies of its own owner; when other owners' copies fill the budget the load
// faults RESOURCE_EXHAUSTED instead.
//
// Where resident copies live is the ResidencyStore's business: host memory for the CPU engine,
// device memory for the CUDA engine (whose kernel answers resident LOAD_MISS and CHECKSUM
// itself and asks the host only on a miss). Pins keep a resource from being evicted while an
// executor reads its bytes: a host CHECKSUM holds one while it hashes, the CUDA engine one per
// dispatched CHECKSUM slot.
//
// Threads: engine workers / reapers (LoadMiss, Checksum, pins), the pump thread, the reader's
// thread(s) (completions), callers of the resource API. One mutex guards the residency map.
// Lifetime: destroy before the ring and reaper it resumes slots through.
#ifndef MK_ENGINE_SRC_HOST_RESOURCE_LOADER_H_
#define MK_ENGINE_SRC_HOST_RESOURCE_LOADER_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "host/partitioned_ring.h"
#include "host/residency_store.h"
#include "host/slot_reaper.h"
#include "mk/engine/engine.h"
#include "mk/engine/io_queue.h"
#include "mk/io/file_reader.h"
#include "mk/io/resource_table.h"

namespace mk::engine::host {

class ResourceLoader {
 public:
  // Makes the store once the reader exists (a device store registers the reader's staging).
  using StoreFactory =
      std::function<absl::StatusOr<std::unique_ptr<ResidencyStore>>(io::FileReader& reader)>;
  // Without a factory the resident copies live in host memory.
  static absl::StatusOr<std::unique_ptr<ResourceLoader>> Create(
      const EngineOptions& options, PartitionedRing& ring, SlotReaper& reaper,
      const StoreFactory& make_store = nullptr);
  ~ResourceLoader();

  // The interpreter's io hook (context = this loader).
  protocol::IoHook Hook();
  protocol::ExecResult LoadMiss(uint32_t slot_index, uint32_t tenant, const uint32_t* args);
  protocol::ExecResult Checksum(uint32_t slot_index, uint32_t tenant, const uint32_t* args);
  // Copies resident bytes [offset, offset + out.size()) of resource `id` into `out` (ReadBuffer
  // with a resource id): NOT_FOUND when it is not `tenant`'s or shared, FAILED_PRECONDITION
  // when it is not resident (load it with LOAD_MISS first) or resident in device memory (not
  // readable back yet), OUT_OF_RANGE past its end. Pinned while copied.
  absl::Status ReadResident(uint32_t tenant, uint32_t id, uint64_t offset, absl::Span<char> out);

  // An executor reads resource `id`'s bytes until the matching Unpin: it is not evicted.
  void Pin(uint32_t id);
  void Unpin(uint32_t id);
  // Forgets every pin (the executor stopped; nothing reads any more).
  void ReleaseAllPins();
  // The executor answered a LOAD_MISS of a resident resource itself: counted, and the resource
  // becomes the most recently used.
  void CountExecutorHit(uint32_t id);
  // Waits (up to `deadline`) for loads in flight to finish, then drops every resident copy:
  // the device memory behind them is about to be reset. OK, or DEADLINE_EXCEEDED.
  absl::Status ForgetResidents(absl::Time deadline);
  // Tests: while held, claimed io requests wait (occupying their io slots) instead of being
  // read; releasing reads them all. Lets a test fill the io queue deterministically.
  void HoldReads(bool hold);

  absl::StatusOr<uint32_t> Register(uint32_t tenant, const std::string& path, uint64_t offset,
                                    uint64_t length);
  std::vector<ResourceInfo> List(uint32_t tenant);
  absl::Status Evict(uint32_t tenant, uint32_t resource_id);
  void Stats(IoStats* out);
  // Bytes read from files (as they land) plus bytes hashed by host CHECKSUMs: grows while
  // long io-bound work runs, even before any slot of it completes (the watchdog's measure).
  uint64_t ProgressBytes() const {
    return reader_->stats().bytes_received + hashed_bytes_.load(std::memory_order_relaxed);
  }

 private:
  struct Waiter {
    uint32_t index;
    uint64_t ticket;  // the slot's ticket when it started waiting (guards against reuse)
  };
  struct Resident {
    bool loading = true;
    uint64_t reserved = 0;  // budget bytes held (the resource's length)
    std::vector<Waiter> waiters;
    uint64_t last_use = 0;
    uint32_t owner = 0;  // the resource's owner (io::Resource::tenant)
  };

  ResourceLoader(const EngineOptions& options, PartitionedRing& ring, SlotReaper& reaper,
                 std::unique_ptr<io::ResourceTable> table, std::unique_ptr<io::FileReader> reader,
                 std::unique_ptr<ResidencyStore> store);
  bool PinnedLocked(uint32_t id) const { return pins_.contains(id); }
  // Drops a resident copy (budget, store, map). mu_ held.
  void DropLocked(std::map<uint32_t, Resident>::iterator it);
  absl::StatusOr<io::Resource> Owned(uint32_t tenant, uint32_t id) const;
  // Frees budget and store room for resource `id` (`bytes` of `tenant`'s) by evicting unpinned
  // resident copies, oldest use first, and places it in the store.
  bool MakeRoomLocked(uint32_t id, uint32_t owner, uint64_t bytes);
  uint64_t OwnerUsedLocked(uint32_t owner) const;
  // Whether some copy of `owner`'s is loading or pinned (it will free room by itself).
  bool OwnerBusyLocked(uint32_t owner) const;
  // Publishes overflowed requests while the io queue has room; true if any was published.
  bool PublishOverflowLocked();
  void PumpLoop();
  // Claims io slot `io_index` and reads its resource (BeginRead), unless reads are held.
  void StartRead(uint32_t io_index);
  void BeginRead(uint32_t io_index, uint32_t resource_id);
  void FinishRead(uint32_t io_index, uint32_t resource_id, absl::Status status, uint64_t start_ns);

  // CLAIMED -> WAIT_IO for a slot that waits on a read (call with mu_ held: the read's
  // completion resumes its waiters under mu_, so it always finds the slot waiting); returns
  // the slot's ticket.
  uint64_t MarkWaiting(uint32_t slot_index);

  PartitionedRing& ring_;
  SlotReaper& reaper_;
  const uint64_t budget_bytes_;
  const uint64_t owner_budget_bytes_;  // per owner, <= budget_bytes_
  std::unique_ptr<io::ResourceTable> table_;
  std::vector<uint32_t> io_words_;  // the io queue (docs/protocol.md, "Io queue and LOAD_MISS")
  IoQueueView io_queue_;

  std::mutex mu_;  // guards everything below
  std::map<uint32_t, Resident> resident_;
  uint64_t used_bytes_ = 0;
  absl::flat_hash_map<uint32_t, uint64_t> used_by_owner_;  // reserved bytes per owner
  std::deque<IoRequest> overflow_;  // requests waiting for room in the io queue
  bool hold_reads_ = false;         // HoldReads
  std::vector<std::pair<uint32_t, uint32_t>> held_reads_;  // (io slot, resource id) held
  uint64_t clock_ = 0;                                     // LRU order
  bool stop_ = false;
  std::condition_variable work_;  // new io requests, or stop
  IoStats stats_;
  LatencyHistogram io_latency_;
  absl::flat_hash_map<uint32_t, uint32_t> pins_;  // resource id -> executor reads under way
  uint32_t reads_in_flight_ = 0;                  // StartRead .. FinishRead
  std::condition_variable reads_done_;            // reads_in_flight_ reached 0
  std::atomic<uint32_t> io_hint_{0};
  std::atomic<uint64_t> hashed_bytes_{0};  // host CHECKSUM bytes, for ProgressBytes              //
                                           // where workers start looking for a free io slot

  // The destructor waits for reads in flight, then destroys the store, then the reader (a
  // device store registered the reader's staging memory and its sinks use the store).
  std::unique_ptr<io::FileReader> reader_;
  std::unique_ptr<ResidencyStore> store_;
  std::thread pump_;
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_RESOURCE_LOADER_H_
