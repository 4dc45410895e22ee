// mkctl soak's workload: the slots it publishes and what each is expected to do (SlotKind).
//
// Scratch words of each tenant's window (docs/protocol.md, "Opcodes"): word 0 is only ever
// incremented by ATOMIC_ADD(1, 0) from lanes whose every outcome the soak sees (the counter
// check); word 1 by the lanes whose answers may be lost or given up; words 2..31 are stored,
// loaded and summed. Out-of-bounds slots use indices far past any window.
#ifndef MK_CLIENT_SRC_SOAK_WORKLOAD_H_
#define MK_CLIENT_SRC_SOAK_WORKLOAD_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/time/time.h"
#include "mk/client/client.h"
#include "soak_ledger.h"

namespace mk::mkctl::soak {

namespace op {
inline constexpr uint32_t kNop = 0;
inline constexpr uint32_t kStoreU32 = 1;
inline constexpr uint32_t kAtomicAdd = 2;
inline constexpr uint32_t kLoadU32 = 3;
inline constexpr uint32_t kScratchSum = 8;
inline constexpr uint32_t kChecksum = 0xFFF0;
inline constexpr uint32_t kLoadMiss = 0xFFFD;
// In the user range, registered by nobody: rejected at publish time.
inline constexpr uint32_t kUnregistered = 0x7FFFFF00;
}  // namespace op

inline constexpr uint32_t kCounterIndex = 0;
inline constexpr uint32_t kSpareCounterIndex = 1;
inline constexpr uint32_t kPriorityNormal = 2;
inline constexpr uint32_t kPriorityIdle = 4;
// Resource ids nobody registers (ids are the smallest free ones, so these stay free).
inline constexpr uint32_t kBadResourceId = 0x7FFFFFF0;

// The slots of one request and the kind of each.
struct Batch {
  std::vector<client::Slot> slots;
  std::vector<SlotKind> kinds;
  void Add(client::Slot slot, SlotKind kind) {
    slots.push_back(std::move(slot));
    kinds.push_back(kind);
  }
};

// `n` valid slots (NOP, ATOMIC_ADD, STORE_U32, LOAD_U32, SCRATCH_SUM); each is instead an
// out-of-bounds one with probability `oob_percent` / 100. `checked`: adds go to the counter
// word (kCounter), else to the spare one (kValid).
Batch ValidBatch(std::mt19937_64& rng, size_t n, bool checked, uint32_t priority, int oob_percent);
// LOAD_MISS, CHECKSUM, or LOAD_MISS then CHECKSUM, of `resource`.
Batch ResourceBatch(std::mt19937_64& rng, uint32_t resource);
// A CHECKSUM or LOAD_MISS of kBadResourceId.
Batch BadResourceBatch(std::mt19937_64& rng);

v1::PublishRequest ToRequest(const std::vector<client::Slot>& slots, bool packed,
                             absl::Duration wait);

}  // namespace mk::mkctl::soak

#endif  // MK_CLIENT_SRC_SOAK_WORKLOAD_H_
