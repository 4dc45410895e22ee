#include "mk/engine/telemetry.h"

#include <algorithm>
#include <atomic>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "mk/engine/control_buffer.h"

namespace mk::engine {

namespace ctl = protocol::control;
using protocol::SlotStatus;

namespace {
uint32_t AtomicLoad(const uint32_t& word) {
  return std::atomic_ref<uint32_t>(const_cast<uint32_t&>(word)).load(std::memory_order_acquire);
}

absl::Status CheckRing(absl::Span<const uint32_t> ring) {
  if (ring.size() % protocol::kSlotWords != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "telemetry: ring of ", ring.size(), " words is not a whole number of 16-word slots"));
  }
  return absl::OkStatus();
}

uint32_t Ratio(uint64_t part, uint64_t whole, uint64_t scale) {
  return whole == 0 ? 0 : static_cast<uint32_t>(part * scale / whole);
}
}  // namespace

absl::Status DecodeOccupancy(absl::Span<const uint32_t> ring, Occupancy* out) {
  if (absl::Status s = CheckRing(ring); !s.ok()) return s;
  out->by_status.fill(0);
  out->invalid = 0;
  out->total = ring.size() / protocol::kSlotWords;
  for (size_t i = 0; i < ring.size(); i += protocol::kSlotWords) {
    const uint32_t status = AtomicLoad(ring[i + protocol::kWordStatus]);
    if (status < protocol::kSlotStatusCount) {
      ++out->by_status[status];
    } else {
      ++out->invalid;
    }
  }
  out->queue_depth = out->total - out->count(SlotStatus::kEmpty) - out->count(SlotStatus::kDone);
  return absl::OkStatus();
}

absl::Status DecodeControl(absl::Span<const uint32_t> control, ControlSnapshot* out) {
  absl::StatusOr<uint32_t> done = ReadDoneCount(control);
  if (!done.ok()) return done.status();
  out->shutdown = AtomicLoad(control[ctl::kShutdown]);
  out->done_count = *done;
  out->epoch = AtomicLoad(control[ctl::kEpoch]);
  out->starvation_counter = AtomicLoad(control[ctl::kStarvationCounter]);
  out->opcode_metrics.clear();
  for (uint32_t op = 0; op < ctl::kOpcodeMetricsCount; ++op) {
    const uint32_t n = AtomicLoad(control[ctl::kOpcodeMetricsFirst + op]);
    if (n != 0) out->opcode_metrics.emplace_back(op, n);
  }
  for (uint32_t t = 0; t < ctl::kTenantFairnessCount; ++t) {
    out->tenant_fairness[t] = AtomicLoad(control[ctl::kTenantFairnessFirst + t]);
  }
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    out->priority_fairness[p] = AtomicLoad(control[ctl::kPriorityFairnessFirst + p]);
  }
  return absl::OkStatus();
}

void DeriveCounters(const Occupancy& occ, const ControlSnapshot& control, RuntimeCounters* out) {
  const uint64_t empty = occ.count(SlotStatus::kEmpty);
  const uint64_t claimable = occ.count(SlotStatus::kPublished) + occ.count(SlotStatus::kYield) +
                             occ.count(SlotStatus::kRequeue);
  out->idle_ppm = Ratio(empty, occ.total, 1'000'000);
  out->frontier_density_bps = Ratio(claimable, occ.total, 10'000);
  out->occupancy_bps = Ratio(occ.total - empty, occ.total, 10'000);
  out->drained_slots = empty;
  out->unreclaimed_done = occ.count(SlotStatus::kDone) + occ.count(SlotStatus::kFault);
  out->requeue_slots = occ.count(SlotStatus::kRequeue);
  out->fault_slots = occ.count(SlotStatus::kFault);
  uint64_t total = 0;
  uint32_t max = 0;
  uint32_t min = UINT32_MAX;
  for (uint32_t v : control.tenant_fairness) {
    total += v;
    if (v == 0) continue;
    max = std::max(max, v);
    min = std::min(min, v);
  }
  out->fairness_total = total;
  out->fairness_skew_bps = max == 0 ? 0 : Ratio(max - min, max, 10'000);
}

absl::Status DecodeWindows(absl::Span<const uint32_t> ring,
                           absl::Span<const uint32_t> window_opcodes,
                           std::vector<WindowGroup>* out) {
  if (absl::Status s = CheckRing(ring); !s.ok()) return s;
  out->clear();
  if (window_opcodes.empty()) return absl::OkStatus();
  if (window_opcodes.size() > kMaxWindowOpcodes) {
    return absl::InvalidArgumentError(absl::StrCat("telemetry: ", window_opcodes.size(),
                                                   " window opcodes; at most ", kMaxWindowOpcodes));
  }
  // A sorted copy: each slot costs a binary search, not a scan of the list.
  absl::InlinedVector<uint32_t, kMaxWindowOpcodes> wanted(window_opcodes.begin(),
                                                          window_opcodes.end());
  std::sort(wanted.begin(), wanted.end());
  // Collect one entry per matching slot, then sort and merge in place: no map, no allocation
  // once `out` has grown to the number of window slots.
  for (size_t i = 0; i < ring.size(); i += protocol::kSlotWords) {
    const uint32_t status = AtomicLoad(ring[i + protocol::kWordStatus]);
    if (status == static_cast<uint32_t>(SlotStatus::kEmpty) ||
        status >= protocol::kSlotStatusCount) {
      continue;
    }
    const uint32_t op = AtomicLoad(ring[i + protocol::kWordOpcode]);
    if (!std::binary_search(wanted.begin(), wanted.end(), op)) continue;
    WindowGroup g;
    g.ticket = AtomicLoad(ring[i + protocol::kWordArg0]);
    g.opcode = op;
    g.by_class[AtomicLoad(ring[i + protocol::kWordArg0 + 1]) == 0 ? 0 : 1] = 1;
    g.by_status[status] = 1;
    out->push_back(g);
  }
  std::sort(out->begin(), out->end(), [](const WindowGroup& a, const WindowGroup& b) {
    return a.ticket != b.ticket ? a.ticket < b.ticket : a.opcode < b.opcode;
  });
  size_t w = 0;
  for (size_t r = 0; r < out->size(); ++r) {
    WindowGroup& src = (*out)[r];
    if (w > 0 && (*out)[w - 1].ticket == src.ticket && (*out)[w - 1].opcode == src.opcode) {
      WindowGroup& dst = (*out)[w - 1];
      for (size_t c = 0; c < dst.by_class.size(); ++c) dst.by_class[c] += src.by_class[c];
      for (size_t s = 0; s < dst.by_status.size(); ++s) dst.by_status[s] += src.by_status[s];
    } else {
      (*out)[w++] = src;
    }
  }
  out->resize(w);
  return absl::OkStatus();
}

absl::Status DecodeTelemetry(absl::Span<const uint32_t> ring, absl::Span<const uint32_t> control,
                             absl::Span<const uint32_t> window_opcodes, TelemetrySnapshot* out) {
  if (absl::Status s = DecodeOccupancy(ring, &out->occupancy); !s.ok()) return s;
  if (absl::Status s = DecodeControl(control, &out->control); !s.ok()) return s;
  DeriveCounters(out->occupancy, out->control, &out->counters);
  return DecodeWindows(ring, window_opcodes, &out->windows);
}

WatchdogReport EvaluateWatchdog(const ControlSnapshot& before, const ControlSnapshot& after,
                                const Occupancy& occupancy_after) {
  WatchdogReport r;
  r.done_delta = DoneDelta(before.done_count, after.done_count);
  r.queue_depth = occupancy_after.queue_depth;
  r.faults = occupancy_after.count(SlotStatus::kFault);
  r.suspected_stall = r.queue_depth > 0 && r.done_delta == 0;
  return r;
}

}  // namespace mk::engine
