// engine_demo: runs the embedded default engine (CreateEngine with --engine, default auto) with
// a short mixed workload and prints what happened. It is the README's main job until the gRPC
// server (megakerneld) exists.
#include <cstdio>
#include <string>
#include <vector>

#include "mk/engine/engine.h"
#include "mk/engine/opcode_registry.h"
#include "mk/engine/packed_slot.h"

namespace {

using mk::engine::Completion;
using mk::engine::CompletionStatus;
using mk::engine::SlotPayload;
namespace op = mk::protocol::opcode;

SlotPayload Slot(uint32_t opcode, std::vector<uint32_t> args, uint32_t priority = 2) {
  SlotPayload s;
  s.opcode = opcode;
  s.priority = priority;
  for (size_t i = 0; i < args.size(); ++i) s.args[i] = args[i];
  return s;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "engine_demo: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string backend = "auto";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--engine=", 0) == 0) {
      backend = a.substr(9);
    } else {
      std::fprintf(stderr, "usage: engine_demo [--engine=auto|cpu|cuda]\n");
      return 2;
    }
  }
  mk::engine::EngineOptions options;
  auto parsed = mk::engine::ParseBackend(backend);
  if (!parsed.ok()) return Fail(parsed.status());
  options.backend = *parsed;
  auto engine = mk::engine::CreateEngine(options);
  if (!engine.ok()) return Fail(engine.status());
  if (auto s = (*engine)->Start(); !s.ok()) return Fail(s);
  const auto info = (*engine)->info();
  std::printf("engine: backend=%s device=\"%s\" ring_slots=%u\n", info.backend.c_str(),
              info.device.c_str(), info.ring_slots);

  // Tenant 7: a counter built with ATOMIC_ADD, read back, summed, a fence over the batch, a
  // packed slot, and a CRITICAL NOP.
  constexpr uint32_t kTenant = 7;
  std::vector<SlotPayload> batch;
  for (uint32_t i = 0; i < 100; ++i) batch.push_back(Slot(op::kAtomicAdd, {i, 0}));
  batch.push_back(Slot(op::kBatchFence, {100, 0xFE}));
  batch.push_back(Slot(op::kLoadU32, {0}));
  batch.push_back(Slot(mk::protocol::ScratchSumOp::kOpcode, {0, 4}));
  auto packed = mk::engine::EncodePackedSlot(std::vector<mk::engine::InnerOp>{
      {op::kStoreU32, {5, 1}}, {op::kAtomicAdd, {5, 1}}, {op::kLoadU32, {1}}});
  if (!packed.ok()) return Fail(packed.status());
  SlotPayload packed_slot = Slot(op::kPackedSlot, {});
  packed_slot.args = *packed;
  batch.push_back(packed_slot);
  batch.push_back(Slot(op::kNop, {}, /*priority=*/0));
  batch.push_back(Slot(op::kLoadU32, {9999}));  // faults OUT_OF_BOUNDS, on purpose
  auto published = (*engine)->Publish(kTenant, batch, {});
  if (!published.ok()) return Fail(published.status());
  std::vector<uint64_t> tickets;
  for (uint32_t i = 0; i < published->count; ++i) tickets.push_back(published->first_ticket + i);
  auto done = (*engine)->WaitFor(kTenant, tickets, absl::Now() + absl::Seconds(10));
  if (!done.ok()) return Fail(done.status());
  std::printf("published %u slots (tickets %llu..%llu), %zu completed\n", published->count,
              static_cast<unsigned long long>(published->first_ticket),
              static_cast<unsigned long long>(tickets.back()), done->size());
  for (const Completion& c : *done) {
    if (c.ticket <= published->first_ticket + 99) continue;  // the 100 adds
    if (c.status == CompletionStatus::kFault) {
      std::printf("  ticket %llu: FAULT %s detail=%u\n", static_cast<unsigned long long>(c.ticket),
                  mk::engine::FaultCodeName(static_cast<mk::protocol::FaultCode>(c.fault_code)),
                  c.fault_detail);
    } else {
      std::printf("  ticket %llu: %s results=[%u %u %u]\n", static_cast<unsigned long long>(c.ticket),
                  mk::engine::CompletionStatusName(c.status), c.results[0], c.results[1],
                  c.results[2]);
    }
  }

  // Throughput burst: 1 M NOPs in batches of 1024, collected through WaitFor.
  std::vector<SlotPayload> nops(1024, Slot(op::kNop, {}));
  const absl::Time start = absl::Now();
  uint64_t completed = 0;
  for (int b = 0; b < 1024; ++b) {
    auto r = (*engine)->Publish(1, nops, {});
    if (!r.ok()) return Fail(r.status());
    std::vector<uint64_t> t(r->count);
    for (uint32_t i = 0; i < r->count; ++i) t[i] = r->first_ticket + i;
    auto got = (*engine)->WaitFor(1, t, absl::Now() + absl::Seconds(10));
    if (!got.ok()) return Fail(got.status());
    completed += got->size();
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("burst: %llu NOPs published and collected in %.3f s (%.2f M slots/s)\n",
              static_cast<unsigned long long>(completed), seconds, completed / seconds / 1e6);

  mk::engine::TelemetrySnapshot t;
  if (auto s = (*engine)->Telemetry({}, &t); !s.ok()) return Fail(s);
  std::printf("telemetry: done_count=%u epoch=%u queue_depth=%llu occupancy_bps=%u\n",
              t.control.done_count, t.control.epoch,
              static_cast<unsigned long long>(t.occupancy.queue_depth), t.counters.occupancy_bps);
  auto drained = (*engine)->Drain(absl::Now() + absl::Seconds(10));
  if (!drained.ok()) return Fail(drained.status());
  std::printf("drained: accepted=%llu done=%llu faulted=%llu cancelled=%llu in_flight=%llu\n",
              static_cast<unsigned long long>(drained->accepted),
              static_cast<unsigned long long>(drained->done),
              static_cast<unsigned long long>(drained->faulted),
              static_cast<unsigned long long>(drained->cancelled),
              static_cast<unsigned long long>(drained->in_flight));
  return drained->accepted == drained->done + drained->faulted + drained->cancelled ? 0 : 1;
}
