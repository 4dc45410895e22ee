#include "host/slot_reaper.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "mk/engine/atomics.h"

namespace mk::engine::host {

namespace {

using protocol::SlotStatus;

Completion CompletionFromSlot(const uint32_t* slot, SlotStatus status, uint64_t ticket) {
  Completion c;
  c.tenant = slot[protocol::kWordTenant];
  c.opcode = slot[protocol::kWordOpcode];
  c.ticket = ticket;
  const uint32_t* args = slot + protocol::kWordArg0;
  if (status == SlotStatus::kDone) {
    c.status = CompletionStatus::kDone;
    std::copy(args, args + protocol::kArgWords, c.results.begin());
  } else {
    c.status = CompletionStatus::kFault;
    c.fault_code = args[0];
    c.fault_detail = args[1];
  }
  return c;
}

}  // namespace

SlotReaper::SlotReaper(PartitionedRing& ring, ControlBuffers& control, OutcomeLedger& ledger,
                       CompletionSink& default_sink)
    : ring_(ring), control_(control), ledger_(ledger), default_sink_(default_sink) {}

bool SlotReaper::ReapIfTerminal(uint32_t index, CompletionBatcher* out) {
  uint32_t* w = ring_.slot(index);
  const auto status =
      static_cast<SlotStatus>(PartitionedRing::StatusWord(w).load(std::memory_order_acquire));
  if (!protocol::IsTerminal(status)) return false;
  const SlotMeta& m = ring_.meta(index);
  const Completion c = CompletionFromSlot(w, status, m.ticket.load(std::memory_order_relaxed));
  CompletionSink* sink = m.sink;
  const uint64_t publish_ns = m.publish_ns;
  if (!PartitionedRing::MoveStatus(w, index, status, SlotStatus::kEmpty, Actor::kHost)) {
    return false;  // another thread reaped it first
  }
  out->Add(sink, c, publish_ns);
  return true;
}

void SlotReaper::ReapRange(const ClaimRange& range, CompletionBatcher* out) {
  ring_.ForEachIndex(range, [&](uint32_t index) { ReapIfTerminal(index, out); });
  out->Flush();
  ring_.AdvanceTail(range.partition);
}

void SlotReaper::ReapIndices(absl::Span<const uint32_t> indices, CompletionBatcher* out) {
  std::array<bool, protocol::kPriorityCount> touched{};
  for (uint32_t index : indices) {
    ReapIfTerminal(index, out);
    touched[ring_.PartitionOf(index)] = true;
  }
  out->Flush();
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    if (touched[p]) ring_.AdvanceTail(p);
  }
}

void SlotReaper::ReapSlot(uint32_t index, CompletionBatcher* out) {
  ReapIfTerminal(index, out);
  ring_.AdvanceTail(ring_.PartitionOf(index));
}

bool SlotReaper::CancelSlot(uint32_t index, CompletionBatcher* out) {
  const auto status = static_cast<SlotStatus>(ring_.status(index).load(std::memory_order_acquire));
  if (!protocol::IsClaimable(status)) return false;
  const uint32_t* w = ring_.slot(index);
  const SlotMeta& m = ring_.meta(index);
  Completion c;
  c.tenant = protocol::AtomicLoad(&w[protocol::kWordTenant]);
  c.opcode = protocol::AtomicLoad(&w[protocol::kWordOpcode]);
  c.ticket = m.ticket.load(std::memory_order_relaxed);
  c.status = CompletionStatus::kCancelled;
  CompletionSink* sink = m.sink;
  const uint32_t fence = m.fence_waiter;
  const uint64_t publish_ns = m.publish_ns;
  if (!ring_.MoveStatus(index, status, SlotStatus::kEmpty, Actor::kHost)) {
    return false;  // an executor claimed it first
  }
  out->Add(sink, c, publish_ns);
  if (fence != kNoFence) OnFenceReleased(fence);
  return true;
}

uint32_t SlotReaper::CancelTickets(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                   CompletionBatcher* out) {
  const absl::flat_hash_set<uint64_t> wanted(tickets.begin(), tickets.end());
  uint32_t cancelled = 0;
  for (uint32_t p = 0; p < protocol::kPriorityCount && cancelled < wanted.size(); ++p) {
    ring_.ForEachCommitted(p, [&](uint32_t index) {
      if (!wanted.contains(ring_.meta(index).ticket.load(std::memory_order_relaxed))) return;
      if (protocol::AtomicLoad(&ring_.slot(index)[protocol::kWordTenant]) != tenant) return;
      cancelled += CancelSlot(index, out);
    });
    ring_.AdvanceTail(p);
  }
  return cancelled;
}

bool SlotReaper::ResumeWaiting(uint32_t index, uint64_t ticket, const protocol::ExecResult& result,
                               CompletionBatcher* out) {
  uint32_t fence = kNoFence;
  {
    std::lock_guard<std::mutex> lock(resume_mu_);
    if (ring_.status(index).load(std::memory_order_acquire) !=
            static_cast<uint32_t>(SlotStatus::kWaitIo) ||
        ring_.meta(index).ticket.load(std::memory_order_relaxed) != ticket) {
      return false;
    }
    fence = ring_.meta(index).fence_waiter;  // read before the slot can be reaped
    ring_.WriteOutcome(index, result, Actor::kHost);
    protocol::AtomicFetchAdd(&control_.control().words()[protocol::control::kDoneCount], 1);
  }
  if (fence != kNoFence) OnFenceReleased(fence);
  ReapSlot(index, out);
  return true;
}

void SlotReaper::FailInFlight(CompletionBatcher* out) {
  std::lock_guard<std::mutex> lock(resume_mu_);
  ring_.SweepInFlight([&](uint32_t index) {
    const auto status =
        static_cast<SlotStatus>(ring_.status(index).load(std::memory_order_acquire));
    if (status != SlotStatus::kEmpty && !protocol::IsTerminal(status)) {
      // ARG1 says where it was.
      ring_.WriteOutcome(
          index,
          protocol::Fault(protocol::FaultCode::kEngineRestart, static_cast<uint32_t>(status)),
          Actor::kHost);
    }
    ReapIfTerminal(index, out);
  });
}

}  // namespace mk::engine::host
