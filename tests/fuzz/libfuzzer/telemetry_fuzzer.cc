// libFuzzer target: the telemetry decoders (mk/engine/telemetry.h, docs/protocol.md "Telemetry"),
// which read the live ring and control buffer without stopping the engine.
//
// Input: a ring of 0..64 slots (any STATUS word, garbage included; opcodes, tickets and classes
// drawn to collide), sometimes not a whole number of slots; a control snapshot of any length
// (contents from a seeded generator); window opcodes (0..11, or around the limit of 64); a
// DONE_COUNT for the watchdog's earlier sample.
// Properties, against naive reference computations:
// - DecodeOccupancy: refused exactly for a ragged ring; counts per status, invalid STATUS words,
//   total and queue depth are exact;
// - DecodeControl: refused exactly below the 160-word header; every field is its word;
//   opcode_metrics lists exactly the non-zero counters in opcode order;
// - DeriveCounters: ratios within their scales, the counts they restate equal;
// - DecodeWindows: refused for a ragged ring or more than 64 opcodes; groups equal a map keyed
//   by (ticket, opcode) over non-EMPTY valid slots, sorted and unique, also when the output
//   vector held an earlier, longer result;
// - DecodeTelemetry is the parts in one call; EvaluateWatchdog's delta wraps and its stall rule
//   is the documented one.
#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "fuzz/libfuzzer/fuzz_support.h"
#include "mk/engine/protocol.h"
#include "mk/engine/telemetry.h"

namespace mk::engine {
namespace {

namespace ctl = protocol::control;
using protocol::SlotStatus;

uint32_t Opcode(fuzz::Input& in) {
  const uint8_t pick = in.U8();
  return pick < 224 ? pick % 10 : in.U32();
}

std::vector<uint32_t> MakeRing(fuzz::Input& in) {
  const uint32_t slots = in.Below(65);
  std::vector<uint32_t> ring(size_t{slots} * protocol::kSlotWords);
  for (uint32_t s = 0; s < slots; ++s) {
    uint32_t* w = &ring[size_t{s} * protocol::kSlotWords];
    const uint8_t status = in.U8();
    w[protocol::kWordStatus] = status < 240 ? status % protocol::kSlotStatusCount : in.U32();
    w[protocol::kWordOpcode] = Opcode(in);
    w[protocol::kWordArg0] = in.Below(6);      // the ticket: few, so that groups form
    w[protocol::kWordArg0 + 1] = in.Below(3);  // the class: 0 required, else lookahead
  }
  if (in.U8() < 16) ring.resize(ring.size() + 1 + in.Below(protocol::kSlotWords - 1));
  return ring;
}

std::vector<uint32_t> MakeControl(fuzz::Input& in) {
  const size_t length = in.U8() < 32 ? in.Below(200) : ctl::kMinWords + in.Below(40);
  std::minstd_rand random(in.U32());
  const uint32_t density = in.Below(5);  // 0: all zero .. 4: every word
  std::vector<uint32_t> control(length);
  for (uint32_t& w : control) {
    if (random() % 4 < density) w = random() % 3 == 0 ? random() : random() % 5;
  }
  return control;
}

void CheckOccupancy(absl::Span<const uint32_t> ring, const Occupancy& occ) {
  std::array<uint64_t, protocol::kSlotStatusCount> by_status{};
  uint64_t invalid = 0;
  for (size_t i = 0; i < ring.size(); i += protocol::kSlotWords) {
    const uint32_t status = ring[i + protocol::kWordStatus];
    if (status < protocol::kSlotStatusCount) {
      ++by_status[status];
    } else {
      ++invalid;
    }
  }
  const uint64_t total = ring.size() / protocol::kSlotWords;
  MK_FUZZ_CHECK(occ.by_status == by_status && occ.invalid == invalid && occ.total == total,
                "occupancy counts");
  MK_FUZZ_CHECK(occ.queue_depth == total - by_status[0] - by_status[3], "queue depth ",
                occ.queue_depth);
}

void CheckControl(absl::Span<const uint32_t> control, const ControlSnapshot& snap) {
  MK_FUZZ_CHECK(snap.shutdown == control[ctl::kShutdown] &&
                    snap.done_count == control[ctl::kDoneCount] &&
                    snap.epoch == control[ctl::kEpoch] &&
                    snap.starvation_counter == control[ctl::kStarvationCounter],
                "control scalars");
  std::vector<std::pair<uint32_t, uint32_t>> metrics;
  for (uint32_t op = 0; op < ctl::kOpcodeMetricsCount; ++op) {
    if (control[ctl::kOpcodeMetricsFirst + op] != 0) {
      metrics.emplace_back(op, control[ctl::kOpcodeMetricsFirst + op]);
    }
  }
  MK_FUZZ_CHECK(snap.opcode_metrics == metrics, "opcode metrics");
  for (uint32_t t = 0; t < ctl::kTenantFairnessCount; ++t) {
    MK_FUZZ_CHECK(snap.tenant_fairness[t] == control[ctl::kTenantFairnessFirst + t], "tenant ", t);
  }
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    MK_FUZZ_CHECK(snap.priority_fairness[p] == control[ctl::kPriorityFairnessFirst + p], "prio");
  }
}

void CheckCounters(const Occupancy& occ, const ControlSnapshot& control, const RuntimeCounters& c) {
  const uint64_t empty = occ.count(SlotStatus::kEmpty);
  MK_FUZZ_CHECK(c.idle_ppm <= 1'000'000 && c.frontier_density_bps <= 10'000 &&
                    c.occupancy_bps <= 10'000 && c.fairness_skew_bps <= 10'000,
                "a ratio past its scale");
  MK_FUZZ_CHECK(occ.total != 0 || (c.idle_ppm == 0 && c.occupancy_bps == 0), "empty ring");
  MK_FUZZ_CHECK(
      c.drained_slots == empty && c.requeue_slots == occ.count(SlotStatus::kRequeue) &&
          c.fault_slots == occ.count(SlotStatus::kFault) &&
          c.unreclaimed_done == occ.count(SlotStatus::kDone) + occ.count(SlotStatus::kFault),
      "restated counts");
  uint64_t total = 0;
  for (uint32_t v : control.tenant_fairness) total += v;
  MK_FUZZ_CHECK(c.fairness_total == total, "fairness total");
}

using Key = std::pair<uint32_t, uint32_t>;  // (ticket, opcode)

void CheckWindows(absl::Span<const uint32_t> ring, absl::Span<const uint32_t> opcodes,
                  const std::vector<WindowGroup>& out) {
  std::map<Key, WindowGroup> expected;
  for (size_t i = 0; i < ring.size(); i += protocol::kSlotWords) {
    const uint32_t status = ring[i + protocol::kWordStatus];
    const uint32_t op = ring[i + protocol::kWordOpcode];
    if (status == 0 || status >= protocol::kSlotStatusCount) continue;
    if (std::find(opcodes.begin(), opcodes.end(), op) == opcodes.end()) continue;
    const uint32_t ticket = ring[i + protocol::kWordArg0];
    WindowGroup& g = expected[{ticket, op}];
    g.ticket = ticket;
    g.opcode = op;
    ++g.by_class[ring[i + protocol::kWordArg0 + 1] == 0 ? 0 : 1];
    ++g.by_status[status];
  }
  MK_FUZZ_CHECK(out.size() == expected.size(), out.size(), " groups, expected ", expected.size());
  size_t i = 0;
  for (const auto& [key, g] : expected) {
    const WindowGroup& got = out[i++];
    MK_FUZZ_CHECK(got.ticket == g.ticket && got.opcode == g.opcode && got.by_class == g.by_class &&
                      got.by_status == g.by_status,
                  "group (", g.ticket, ", ", g.opcode, ")");
  }
}

void Fuzz(fuzz::Input& in) {
  const std::vector<uint32_t> ring = MakeRing(in);
  const std::vector<uint32_t> control = MakeControl(in);
  std::vector<uint32_t> opcodes(in.U8() < 240 ? in.Below(12) : 60 + in.Below(10));
  for (uint32_t& op : opcodes) op = Opcode(in);
  const bool ring_ok = ring.size() % protocol::kSlotWords == 0;
  const bool control_ok = control.size() >= ctl::kMinWords;
  const bool windows_ok = opcodes.size() <= kMaxWindowOpcodes;

  Occupancy occ;
  const absl::Status occ_status = DecodeOccupancy(ring, &occ);
  MK_FUZZ_CHECK(occ_status.ok() == ring_ok, occ_status.ToString());
  if (ring_ok) CheckOccupancy(ring, occ);

  ControlSnapshot snap;
  snap.opcode_metrics.assign(40, {1, 1});  // stale entries must not survive
  const absl::Status control_status = DecodeControl(control, &snap);
  MK_FUZZ_CHECK(control_status.ok() == control_ok, control_status.ToString());
  if (control_ok) CheckControl(control, snap);

  if (ring_ok && control_ok) {
    RuntimeCounters counters;
    DeriveCounters(occ, snap, &counters);
    CheckCounters(occ, snap, counters);
    ControlSnapshot before;
    before.done_count = in.U32();
    const WatchdogReport w = EvaluateWatchdog(before, snap, occ);
    MK_FUZZ_CHECK(w.done_delta == snap.done_count - before.done_count, "delta");
    MK_FUZZ_CHECK(w.suspected_stall == (occ.queue_depth > 0 && w.done_delta == 0), "stall rule");
    MK_FUZZ_CHECK(w.queue_depth == occ.queue_depth && w.faults == occ.count(SlotStatus::kFault),
                  "watchdog counts");
  }

  // Windows twice into one vector: a longer earlier result must leave nothing behind.
  std::vector<WindowGroup> windows;
  const std::vector<uint32_t> all_ops = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  if (ring_ok) (void)DecodeWindows(ring, all_ops, &windows);
  const absl::Status windows_status = DecodeWindows(ring, opcodes, &windows);
  MK_FUZZ_CHECK(windows_status.ok() == (ring_ok && windows_ok), windows_status.ToString());
  if (windows_status.ok()) CheckWindows(ring, opcodes, windows);

  TelemetrySnapshot t;
  const absl::Status all = DecodeTelemetry(ring, control, opcodes, &t);
  MK_FUZZ_CHECK(all.ok() == (ring_ok && control_ok && windows_ok), all.ToString());
  if (all.ok()) {
    CheckOccupancy(ring, t.occupancy);
    CheckControl(control, t.control);
    CheckCounters(t.occupancy, t.control, t.counters);
    CheckWindows(ring, opcodes, t.windows);
  }
}

}  // namespace
}  // namespace mk::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mk::fuzz::Input in(data, size);
  mk::engine::Fuzz(in);
  return 0;
}
