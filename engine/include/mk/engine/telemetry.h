// Telemetry decoded from the ring and the control buffer without stopping the engine
// (docs/protocol.md, "Telemetry"). All decoding writes into caller-owned structures; once their
// vectors have grown to the working size a poll allocates nothing.
#ifndef MK_ENGINE_TELEMETRY_H_
#define MK_ENGINE_TELEMETRY_H_

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "mk/engine/protocol.h"

namespace mk::engine {

struct Occupancy {
  std::array<uint64_t, protocol::kSlotStatusCount> by_status{};
  uint64_t total = 0;
  uint64_t queue_depth = 0;  // every slot that is neither EMPTY nor DONE
  uint64_t invalid = 0;      // STATUS words holding no protocol value (a bug if ever non-zero)
  uint64_t count(protocol::SlotStatus s) const { return by_status[static_cast<uint32_t>(s)]; }
};

struct ControlSnapshot {
  uint32_t shutdown = 0;
  uint32_t done_count = 0;
  uint32_t epoch = 0;
  uint32_t starvation_counter = 0;
  // (opcode, executions) for opcodes 0..31 with a non-zero counter; capacity reused.
  std::vector<std::pair<uint32_t, uint32_t>> opcode_metrics;
  std::array<uint32_t, protocol::control::kTenantFairnessCount> tenant_fairness{};
  std::array<uint32_t, protocol::kPriorityCount> priority_fairness{};
};

// vyre's derived runtime counters.
struct RuntimeCounters {
  uint32_t idle_ppm = 0;              // EMPTY slots per million slots
  uint32_t frontier_density_bps = 0;  // claimable (PUBLISHED|YIELD|REQUEUE) per 10,000 slots
  uint32_t occupancy_bps = 0;         // non-EMPTY per 10,000 slots
  uint64_t drained_slots = 0;         // EMPTY slots
  uint64_t unreclaimed_done = 0;      // terminal (DONE|FAULT) slots not yet reaped
  uint64_t fairness_total = 0;        // sum of the tenant fairness counters
  uint32_t fairness_skew_bps = 0;     // (max - min) / max over tenants with claims, per 10,000
  uint64_t requeue_slots = 0;
  uint64_t fault_slots = 0;
};

struct WindowGroup {
  uint32_t ticket = 0;
  uint32_t opcode = 0;
  std::array<uint32_t, 2> by_class{};  // class 0 required, 1 lookahead
  std::array<uint32_t, protocol::kSlotStatusCount> by_status{};
};

struct WatchdogReport {
  uint32_t done_delta = 0;  // wrap-safe
  uint64_t queue_depth = 0;
  uint64_t faults = 0;
  bool suspected_stall = false;
};

struct TelemetrySnapshot {
  Occupancy occupancy;
  ControlSnapshot control;
  RuntimeCounters counters;
  std::vector<WindowGroup> windows;  // capacity reused
};

// Counts slot statuses in `ring` (N x 16 words, atomically read STATUS words).
absl::Status DecodeOccupancy(absl::Span<const uint32_t> ring, Occupancy* out);
// INVALID_ARGUMENT for a snapshot shorter than the 160-word header.
absl::Status DecodeControl(absl::Span<const uint32_t> control, ControlSnapshot* out);
void DeriveCounters(const Occupancy& occupancy, const ControlSnapshot& control,
                    RuntimeCounters* out);
// Window opcodes one telemetry request may name (a request costs a binary search per ring slot).
inline constexpr size_t kMaxWindowOpcodes = 64;
// Groups non-EMPTY slots whose opcode is in `window_opcodes` by (ARG0 ticket, opcode).
// INVALID_ARGUMENT for more than kMaxWindowOpcodes opcodes.
// `out` is sorted by (ticket, opcode); its capacity is reused.
absl::Status DecodeWindows(absl::Span<const uint32_t> ring,
                           absl::Span<const uint32_t> window_opcodes,
                           std::vector<WindowGroup>* out);
// Everything above in one pass over caller-owned storage.
absl::Status DecodeTelemetry(absl::Span<const uint32_t> ring, absl::Span<const uint32_t> control,
                             absl::Span<const uint32_t> window_opcodes, TelemetrySnapshot* out);

// The stall rule: queue_depth > 0 and no DONE_COUNT progress between the two snapshots.
WatchdogReport EvaluateWatchdog(const ControlSnapshot& before, const ControlSnapshot& after,
                                const Occupancy& occupancy_after);

}  // namespace mk::engine

#endif  // MK_ENGINE_TELEMETRY_H_
