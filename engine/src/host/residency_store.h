// ResidencyStore: where a ResourceLoader keeps resident copies and how the executor sees them.
// The loader decides what is resident (budget, LRU eviction, coalesced loads, pins); the store
// places the bytes: host memory for the CPU engine (HostResidency, below), device memory and a
// residency table the persistent kernel reads for the CUDA engine (cuda/device_residency.h).
//
// Threads: Place, Publish and Remove are called with the loader's mutex held (never
// concurrently); Fill and HostBytes from any thread, for a resource placed and not removed.
// Remove is never called while the executor may read the resource's bytes (the loader checks
// its pins), nor while the resource is loading.
#ifndef MK_ENGINE_SRC_HOST_RESIDENCY_STORE_H_
#define MK_ENGINE_SRC_HOST_RESIDENCY_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "mk/io/file_reader.h"
#include "mk/io/resource_table.h"

namespace mk::engine::host {

class ResidencyStore {
 public:
  virtual ~ResidencyStore() = default;

  // Room for resource `id` (`length` bytes of `tenant`'s). False when there is none right now
  // (fragmentation, a table entry in use): the loader evicts something and asks again.
  virtual bool Place(uint32_t id, uint32_t tenant, uint64_t length) = 0;
  // The resident resource whose eviction would let Place(id, ...) succeed, when one thing is
  // in the way (the CUDA engine's table entry for `id`); nullopt otherwise.
  virtual std::optional<uint32_t> Obstacle(uint32_t /*id*/) { return std::nullopt; }
  // Reads the placed resource in; `done` runs once, when every byte is in place (or failed).
  virtual absl::Status Fill(uint32_t id, const io::Resource& resource, io::FileReader& reader,
                            io::ReadCallback done) = 0;
  // The read finished: the executor may find the resource from now on. An error (the copy to
  // the device failed) fails the load instead.
  virtual absl::Status Publish(uint32_t id) = 0;
  // The executor stops finding `id`; its room is free again.
  virtual void Remove(uint32_t id) = 0;
  // The resident bytes, when the host can read them (CHECKSUM on the CPU engine); empty for
  // device memory.
  virtual absl::Span<const uint8_t> HostBytes(uint32_t id) = 0;
};

// Resident copies in host memory, one buffer per resource (the CPU engine's executor reads them
// through HostBytes).
std::unique_ptr<ResidencyStore> CreateHostResidency();

}  // namespace mk::engine::host

#endif  // MK_ENGINE_SRC_HOST_RESIDENCY_STORE_H_
