// What an opcode runs with (host and device code): its outcome (ExecResult, Fault, Done), the
// engine's context (control buffer, debug log, io hooks, tenant buffers) and the tenant's
// scratch window. The interpreter (interpreter.h) and the memory opcodes (memory_opcodes.h)
// build on it.
#ifndef MK_ENGINE_EXEC_CONTEXT_H_
#define MK_ENGINE_EXEC_CONTEXT_H_

#include <stdint.h>

#include "mk/engine/atomics.h"
#include "mk/engine/protocol.h"

namespace mk::protocol {

struct ExecResult {
  SlotStatus status = SlotStatus::kDone;  // DONE, FAULT, WAIT_IO or REQUEUE
  uint32_t result_count = 0;              // result words written to `results`
  uint32_t results[kArgWords] = {};
};

// Called for LOAD_MISS (and CHECKSUM, which needs resident bytes). Engines without a resource
// loader pass nullptr, and those opcodes fault RESOURCE_NOT_FOUND.
struct IoHook {
  void* context = nullptr;
  ExecResult (*load_miss)(void* context, uint32_t slot_index, uint32_t tenant,
                          const uint32_t* args) = nullptr;
  ExecResult (*checksum)(void* context, uint32_t slot_index, uint32_t tenant,
                         const uint32_t* args) = nullptr;
};

// Everything an opcode may touch. All pointers are owned by the engine and outlive the call.
struct ExecContext {
  uint32_t* control = nullptr;  // the control buffer (layout below)
  control::Layout layout{};
  uint32_t* debug_log = nullptr;  // cursor word + records
  uint32_t debug_log_records = 0;
  IoHook io{};
  // Tenant buffers (protocol::buffer::Descriptor); null: none, memory opcodes fault.
  const buffer::Descriptor* buffers = nullptr;
  uint32_t buffer_count = 0;
  // The tenant of the slot being run (Execute sets it before a custom opcode runs, so the
  // opcode can resolve that tenant's buffers: ResolveRange(ctx, ctx.tenant, ...)).
  uint32_t tenant = 0;
};

MK_HOST_DEVICE inline ExecResult Fault(FaultCode code, uint32_t detail = 0) {
  ExecResult r;
  r.status = SlotStatus::kFault;
  r.result_count = 2;
  r.results[0] = static_cast<uint32_t>(code);
  r.results[1] = detail;
  return r;
}

MK_HOST_DEVICE inline ExecResult Done(uint32_t result_count = 0) {
  ExecResult r;
  r.result_count = result_count;
  return r;
}

// Appends one debug-log record; returns false when it was dropped (log full, overflow counted
// by the cursor running past capacity).
MK_HOST_DEVICE inline bool AppendLogRecord(uint32_t* log, uint32_t capacity_records,
                                           uint32_t fmt_id, uint32_t a1, uint32_t a2,
                                           uint32_t slot_index) {
  if (log == nullptr) return false;
  const uint32_t at = AtomicFetchAdd(&log[debug_log::kCursorWord], debug_log::kRecordWords);
  if (at >= capacity_records * debug_log::kRecordWords) return false;
  uint32_t* r = &log[debug_log::kFirstRecordWord + at];
  r[0] = fmt_id;
  r[1] = a1;
  r[2] = a2;
  r[3] = slot_index;
  return true;
}

// A tenant's scratch window; every index is bounds-checked against its size (64-bit math so
// index + count cannot wrap).
struct Scratch {
  uint32_t* words;
  uint32_t size;
  MK_HOST_DEVICE bool InRange(uint32_t index, uint32_t count = 1) const {
    return uint64_t{index} + count <= size;
  }
};

MK_HOST_DEVICE inline Scratch TenantScratch(const ExecContext& ctx, uint32_t tenant) {
  return Scratch{ctx.control + ctx.layout.ScratchFirst(tenant), ctx.layout.scratch_words};
}

}  // namespace mk::protocol

#endif  // MK_ENGINE_EXEC_CONTEXT_H_
