// ResourceLoader: LOAD_MISS and CHECKSUM for an engine (PROTOCOL.md section 5).
//
// A worker's LOAD_MISS either finds the resource resident (DONE), joins a load already under
// way (WAIT_IO, coalesced: one read per resource however many slots miss), or starts one: it
// reserves residency budget (evicting least-recently-used unpinned resources), publishes an io
// request into the io queue with a compare-and-swap, and leaves its ring slot in WAIT_IO. A
// full io queue answers REQUEUE (the slot is retried, never skipped). The publishing worker
// then serves the request itself (it is a host thread); the pump thread serves whatever is
// left (a request is claimed exactly once, by either), resolves the resource through the table and reads it with the io
// reader; the read's completion writes OK or ERROR into the io slot, resumes every waiting ring
// slot (DONE, or FAULT IO_ERROR with the errno), reaps them and recycles the io slot.
//
// Resident copies live in host memory (the CPU engine). Threads: engine workers (LoadMiss,
// Checksum), the pump thread, the reader's thread(s) (completions), callers of the resource API.
// One mutex guards the residency map. Lifetime: destroy before the RingHost it resumes slots in.
#ifndef MK_ENGINE_SRC_HOST_RESOURCE_LOADER_H_
#define MK_ENGINE_SRC_HOST_RESOURCE_LOADER_H_

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/src/host/ring_host.h"
#include "mk/engine/engine.h"
#include "mk/engine/io_queue.h"
#include "mk/io/file_reader.h"
#include "mk/io/resource_table.h"

namespace mk::engine::host {

class ResourceLoader {
 public:
  static absl::StatusOr<std::unique_ptr<ResourceLoader>> Create(const EngineOptions& options,
                                                               RingHost* host);
  ~ResourceLoader();

  // The interpreter's io hook (context = this loader).
  protocol::IoHook Hook();
  protocol::ExecResult LoadMiss(uint32_t slot_index, uint32_t tenant, const uint32_t* args);
  protocol::ExecResult Checksum(uint32_t slot_index, uint32_t tenant, const uint32_t* args);

  absl::StatusOr<uint32_t> Register(uint32_t tenant, const std::string& path, uint64_t offset,
                                    uint64_t length);
  std::vector<ResourceInfo> List(uint32_t tenant);
  absl::Status Evict(uint32_t tenant, uint32_t resource_id);
  void Stats(IoStats* out);

 private:
  struct Waiter {
    uint32_t index;
    uint64_t ticket;  // the slot's ticket when it started waiting (guards against reuse)
  };
  struct Resident {
    bool loading = true;
    uint64_t reserved = 0;  // budget bytes held (the resource's length)
    std::vector<uint8_t> bytes;
    std::vector<Waiter> waiters;
    uint64_t last_use = 0;
    uint32_t readers = 0;  // CHECKSUMs hashing the bytes right now: not evictable
  };

  ResourceLoader(const EngineOptions& options, RingHost* host,
                 std::unique_ptr<io::ResourceTable> table, std::unique_ptr<io::FileReader> reader);
  absl::StatusOr<io::Resource> Owned(uint32_t tenant, uint32_t id) const;
  // Frees budget for `bytes` by evicting unpinned resident copies, oldest use first.
  bool MakeRoomLocked(uint64_t bytes);
  void PumpLoop();
  void StartRead(uint32_t io_index);
  void FinishRead(uint32_t io_index, uint32_t resource_id, absl::Status status, uint64_t start_ns);

  RingHost* const host_;
  const uint64_t budget_bytes_;
  std::unique_ptr<io::ResourceTable> table_;
  std::vector<uint32_t> io_words_;  // the io queue (PROTOCOL.md section 5)
  IoQueueView io_queue_;

  std::mutex mu_;  // guards everything below
  std::map<uint32_t, Resident> resident_;
  uint64_t used_bytes_ = 0;
  uint64_t clock_ = 0;  // LRU order
  bool stop_ = false;
  std::condition_variable work_;  // new io requests, or stop
  IoStats stats_;
  LatencyHistogram io_latency_;
  std::atomic<uint32_t> io_hint_{0};  // where workers start looking for a free io slot

  std::unique_ptr<io::FileReader> reader_;  // destroyed first: no completion outlives us
  std::thread pump_;
};

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_RESOURCE_LOADER_H_
