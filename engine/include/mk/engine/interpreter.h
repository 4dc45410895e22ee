// The opcode interpreter, written once for both engines (host and device code).
//
// `Execute` runs one CLAIMED slot's opcode against the tenant's scratch window and returns the
// terminal outcome with its result words. It does not touch the slot's STATUS word or the
// engine-wide counters: the executor writes results and STATUS (release) and aggregates
// DONE_COUNT, per-opcode metrics and fairness once per claimed batch, so the hot path has no
// shared-counter contention.
//
// Opcodes the interpreter does not run itself:
// - BATCH_FENCE ordering and LOAD_MISS residency are engine decisions. The executor only calls
//   Execute for a fence once its batch predecessors are terminal; LOAD_MISS goes to the
//   executor's io hook (`IoHook`), which may answer WAIT_IO or REQUEUE.
// - Custom opcodes are registered at compile time (opcode_registry.h); the interpreter
//   dispatches to them through the `Registry` template parameter.
#ifndef MK_ENGINE_INTERPRETER_H_
#define MK_ENGINE_INTERPRETER_H_

#include <stdint.h>

#include "mk/engine/atomics.h"
#include "mk/engine/exec_context.h"
#include "mk/engine/memory_opcodes.h"
#include "mk/engine/protocol.h"

namespace mk::protocol {

// The scratch built-ins (0..6), shared by top-level slots and PACKED_SLOT inner ops.
// `args` holds at least the op's argument count.
MK_HOST_DEVICE inline ExecResult ExecuteScratchOp(uint32_t op, const uint32_t* args,
                                                  const Scratch& s) {
  switch (op) {
    case opcode::kNop:
      return Done();
    case opcode::kStoreU32: {  // value, index
      if (!s.InRange(args[1])) return Fault(FaultCode::kOutOfBounds, args[1]);
      AtomicStore(&s.words[args[1]], args[0]);
      return Done();
    }
    case opcode::kAtomicAdd: {  // value, index
      if (!s.InRange(args[1])) return Fault(FaultCode::kOutOfBounds, args[1]);
      ExecResult r = Done(1);
      r.results[0] = AtomicFetchAdd(&s.words[args[1]], args[0]);
      return r;
    }
    case opcode::kLoadU32: {  // index
      if (!s.InRange(args[0])) return Fault(FaultCode::kOutOfBounds, args[0]);
      ExecResult r = Done(1);
      r.results[0] = AtomicLoad(&s.words[args[0]]);
      return r;
    }
    case opcode::kCompareSwap: {  // index, expected, desired
      if (!s.InRange(args[0])) return Fault(FaultCode::kOutOfBounds, args[0]);
      ExecResult r = Done(1);
      r.results[0] = AtomicCompareSwap(&s.words[args[0]], args[1], args[2]);
      return r;
    }
    case opcode::kMemcpy: {  // src, dst, count (memmove semantics inside the window)
      const uint32_t src = args[0], dst = args[1], count = args[2];
      if (!s.InRange(src, count)) return Fault(FaultCode::kOutOfBounds, src);
      if (!s.InRange(dst, count)) return Fault(FaultCode::kOutOfBounds, dst);
      if (dst <= src) {
        for (uint32_t i = 0; i < count; ++i) {
          AtomicStore(&s.words[dst + i], AtomicLoad(&s.words[src + i]));
        }
      } else {
        for (uint32_t i = count; i > 0; --i) {
          AtomicStore(&s.words[dst + i - 1], AtomicLoad(&s.words[src + i - 1]));
        }
      }
      return Done();
    }
    case opcode::kDfaStep: {
      // table, state, symbol, alphabet: next = scratch[table + state * alphabet + symbol].
      // The transition table lives in the tenant's scratch window; result0 = next state.
      const uint32_t table = args[0], state = args[1], symbol = args[2], alphabet = args[3];
      if (alphabet == 0 || symbol >= alphabet) return Fault(FaultCode::kBadArgument, symbol);
      const uint64_t cell = uint64_t{table} + uint64_t{state} * alphabet + symbol;
      if (cell >= s.size) return Fault(FaultCode::kOutOfBounds, state);
      ExecResult r = Done(1);
      r.results[0] = AtomicLoad(&s.words[cell]);
      return r;
    }
    default:
      return Fault(FaultCode::kUnknownOpcode, op);
  }
}

// Runs every inner op of a PACKED_SLOT in order (layout in protocol.h). Result word i is inner
// op i's result0; the first faulting inner op faults the slot with detail = its index.
MK_HOST_DEVICE inline ExecResult ExecutePacked(const uint32_t* args, const Scratch& s) {
  const uint32_t n = args[0];
  if (n == 0 || n > packed::kMaxInnerOps) return Fault(FaultCode::kBadArgument, n);
  ExecResult out = Done(n);
  uint32_t w = 1;
  for (uint32_t i = 0; i < n; ++i) {
    if (w >= kArgWords) return Fault(FaultCode::kBadArgument, i);
    const uint32_t op = packed::HeaderOpcode(args[w]);
    const uint32_t argc = packed::HeaderArgc(args[w]);
    if (!packed::IsInnerOpcode(op) || argc > packed::kMaxInnerArgs || w + 1 + argc > kArgWords) {
      return Fault(FaultCode::kBadArgument, i);
    }
    uint32_t inner_args[packed::kMaxInnerArgs] = {0, 0, 0};
    for (uint32_t a = 0; a < argc; ++a) inner_args[a] = args[w + 1 + a];
    const ExecResult r = ExecuteScratchOp(op, inner_args, s);
    if (r.status == SlotStatus::kFault) return Fault(static_cast<FaultCode>(r.results[0]), i);
    out.results[i] = r.result_count > 0 ? r.results[0] : 0;
    w += 1 + argc;
  }
  return out;
}

// A registry with no custom opcodes.
struct NoCustomOpcodes {
  MK_HOST_DEVICE static bool Has(uint32_t) { return false; }
  MK_HOST_DEVICE static ExecResult Run(uint32_t op, const uint32_t*, const Scratch&, ExecContext&) {
    return Fault(FaultCode::kUnknownOpcode, op);
  }
};

// Runs one claimed slot. `slot` points at its 16 words (payload already acquired).
// BATCH_FENCE: only called once its predecessors are terminal; bumps EPOCH, result0 = tag.
template <typename Registry>
MK_HOST_DEVICE ExecResult Execute(const uint32_t* slot, uint32_t slot_index, ExecContext& ctx) {
  const uint32_t op = slot[kWordOpcode];
  const uint32_t tenant = slot[kWordTenant];
  const uint32_t* args = slot + kWordArg0;
  if (tenant >= ctx.layout.max_tenants) return Fault(FaultCode::kBadArgument, tenant);
  const Scratch scratch = TenantScratch(ctx, tenant);
  if (op == opcode::kDfaStep && buffer::IsBufferHandle(args[0])) {
    return ExecuteDfaStepInBuffer(args, tenant, ctx);
  }
  if (op <= opcode::kDfaStep) return ExecuteScratchOp(op, args, scratch);
  if (IsMemoryOpcode(op)) return ExecuteMemoryOp(op, args, tenant, ctx);
  switch (op) {
    case opcode::kBatchFence: {
      AtomicFetchAdd(&ctx.control[control::kEpoch], 1);
      ExecResult r = Done(1);
      r.results[0] = args[1];
      return r;
    }
    case opcode::kPrintf:
      AppendLogRecord(ctx.debug_log, ctx.debug_log_records, args[0], args[1], args[2], slot_index);
      return Done();
    case opcode::kPackedSlot:
      return ExecutePacked(args, scratch);
    case opcode::kLoadMiss:
      if (ctx.io.load_miss == nullptr) return Fault(FaultCode::kResourceNotFound, args[0]);
      return ctx.io.load_miss(ctx.io.context, slot_index, tenant, args);
    case opcode::kChecksum:
      if (ctx.io.checksum == nullptr) return Fault(FaultCode::kResourceNotFound, args[0]);
      return ctx.io.checksum(ctx.io.context, slot_index, tenant, args);
    default:
      if (Registry::Has(op)) {
        ctx.tenant = tenant;
        return Registry::Run(op, args, scratch, ctx);
      }
      return Fault(FaultCode::kUnknownOpcode, op);
  }
}

}  // namespace mk::protocol

#endif  // MK_ENGINE_INTERPRETER_H_
