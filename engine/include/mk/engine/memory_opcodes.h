// The memory opcodes (0xFFF1..0xFFF5) and DFA_STEP's buffer form, written once for host and
// device code: each resolves its handles to bounds-checked views of tenant buffers
// (ResolveBuffer) and runs over them on one thread. docs/buffers.md documents every argument,
// result and fault; the layouts are repeated next to each function.
//
// Faults, the same on every engine:
// - RESOURCE_NOT_FOUND(detail = the handle): not a live buffer of the slot's tenant (never
//   created, freed, another tenant's, or a resource id: resources are not readable here yet);
// - OUT_OF_BOUNDS(detail = the handle): a range runs past the end of its buffer;
// - BAD_ARGUMENT(detail = the argument word's index): a size over kMaxSlotBytes, a bad dtype
//   or pattern width, a misaligned typed offset, a DFA state out of range.
// The host also checks what needs no memory (sizes, dtype, widths) at publish, so those
// arrive as INVALID_ARGUMENT naming the slot and the field instead.
//
// Work per slot is capped so one slot holds an executor for about a millisecond (a few on a
// slow host core): at most kMaxSlotBytes of every operand, kMaxScanBytes of DFA_SCAN input over
// a table of at most kMaxDfaStates states, kMaxGatherRows rows per EMBEDDING_GATHER. Larger work
// is split by the client into several slots (ranges, row blocks), which executors then run in
// parallel.
#ifndef MK_ENGINE_MEMORY_OPCODES_H_
#define MK_ENGINE_MEMORY_OPCODES_H_

#include <stdint.h>
#include <string.h>

#include "mk/engine/exec_context.h"

namespace mk::protocol {

namespace memory {
inline constexpr uint64_t kMaxSlotBytes = 16ull << 20;
inline constexpr uint64_t kMaxScanBytes = 256ull << 10;
inline constexpr uint32_t kMaxDfaStates = 4096;  // a 4 MiB table
inline constexpr uint32_t kMaxGatherRows = 65536;
inline constexpr uint32_t kDtypeF32 = 0;
inline constexpr uint32_t kDtypeBf16 = 1;
inline constexpr uint32_t kDfaAlphabet = 256;
inline constexpr uint64_t kNoOffset = ~0ull;  // DFA_SCAN: no accepting position
}  // namespace memory

struct MemoryView {
  uint8_t* data = nullptr;
  uint64_t bytes = 0;
  MK_HOST_DEVICE bool Holds(uint64_t offset, uint64_t length) const {
    return offset <= bytes && length <= bytes - offset;
  }
};

MK_HOST_DEVICE inline uint64_t Arg64(const uint32_t* args, uint32_t lo) {
  return uint64_t{args[lo]} | (uint64_t{args[lo + 1]} << 32);
}

// Resolves `handle` for `tenant` into `out`; returns FaultCode::kNone or the fault.
MK_HOST_DEVICE inline FaultCode ResolveBuffer(const ExecContext& ctx, uint32_t tenant,
                                              uint32_t handle, MemoryView* out) {
  if (ctx.buffers == nullptr || !buffer::IsBufferHandle(handle)) {
    return FaultCode::kResourceNotFound;
  }
  const uint32_t index = buffer::HandleIndex(handle);
  if (index >= ctx.buffer_count) return FaultCode::kResourceNotFound;
  const buffer::Descriptor& d = ctx.buffers[index];
  if (AtomicLoad(&d.handle) != handle || d.owner != tenant) return FaultCode::kResourceNotFound;
  // The table holds addresses as integers (the same layout in host and device memory).
  // NOLINTNEXTLINE(performance-no-int-to-ptr)
  out->data = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(d.data));
  out->bytes = d.bytes;
  return FaultCode::kNone;
}

// Resolves `handle` and checks [offset, offset + length) lies in it; on failure `*fault` holds
// the slot's outcome.
MK_HOST_DEVICE inline bool ResolveRange(const ExecContext& ctx, uint32_t tenant, uint32_t handle,
                                        uint64_t offset, uint64_t length, MemoryView* out,
                                        ExecResult* fault) {
  const FaultCode code = ResolveBuffer(ctx, tenant, handle, out);
  if (code != FaultCode::kNone) {
    *fault = Fault(code, handle);
    return false;
  }
  if (!out->Holds(offset, length)) {
    *fault = Fault(FaultCode::kOutOfBounds, handle);
    return false;
  }
  return true;
}

MK_HOST_DEVICE inline uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}
MK_HOST_DEVICE inline float LoadF32(const uint8_t* p) {
  float v;
  memcpy(&v, p, sizeof(v));
  return v;
}
MK_HOST_DEVICE inline float Bf16ToF32(uint16_t bits) {
  const uint32_t wide = uint32_t{bits} << 16;
  float v;
  memcpy(&v, &wide, sizeof(v));
  return v;
}

// memmove, in host and device code (device code has no memmove).
MK_HOST_DEVICE inline void MoveBytes(uint8_t* dst, const uint8_t* src, uint64_t n) {
#if defined(__CUDA_ARCH__)
  if (dst <= src) {
    for (uint64_t i = 0; i < n; ++i) dst[i] = src[i];
  } else {
    for (uint64_t i = n; i > 0; --i) dst[i - 1] = src[i - 1];
  }
#else
  memmove(dst, src, n);
#endif
}

// COPY (0xFFF1): src handle, src offset lo, hi, dst handle, dst offset lo, hi, length lo, hi.
// memmove semantics (overlapping ranges of one buffer are fine). Results: length lo, hi.
MK_HOST_DEVICE inline ExecResult ExecuteCopy(const uint32_t* args, uint32_t tenant,
                                             const ExecContext& ctx) {
  const uint64_t src_offset = Arg64(args, 1), dst_offset = Arg64(args, 4);
  const uint64_t length = Arg64(args, 6);
  if (length > memory::kMaxSlotBytes) return Fault(FaultCode::kBadArgument, 6);
  MemoryView src, dst;
  ExecResult fault;
  if (!ResolveRange(ctx, tenant, args[0], src_offset, length, &src, &fault)) return fault;
  if (!ResolveRange(ctx, tenant, args[3], dst_offset, length, &dst, &fault)) return fault;
  MoveBytes(dst.data + dst_offset, src.data + src_offset, length);
  ExecResult r = Done(2);
  r.results[0] = static_cast<uint32_t>(length);
  r.results[1] = static_cast<uint32_t>(length >> 32);
  return r;
}

// FILL (0xFFF2): dst handle, offset lo, hi, length lo, hi, pattern, pattern width in bytes
// (1, 2 or 4; 0 means 1). Byte i of the range = byte (i % width) of the little-endian pattern.
MK_HOST_DEVICE inline ExecResult ExecuteFill(const uint32_t* args, uint32_t tenant,
                                             const ExecContext& ctx) {
  const uint64_t offset = Arg64(args, 1), length = Arg64(args, 3);
  const uint32_t pattern = args[5];
  const uint32_t width = args[6] == 0 ? 1 : args[6];
  if (length > memory::kMaxSlotBytes) return Fault(FaultCode::kBadArgument, 3);
  if (width != 1 && width != 2 && width != 4) return Fault(FaultCode::kBadArgument, 6);
  MemoryView dst;
  ExecResult fault;
  if (!ResolveRange(ctx, tenant, args[0], offset, length, &dst, &fault)) return fault;
  uint8_t* out = dst.data + offset;
  if (width == 1) {
    memset(out, static_cast<int>(pattern & 0xFF), length);
    return Done();
  }
  // The first bytes one by one, then doubling copies of what is written (a multiple of the
  // width, so the pattern's phase carries over).
  const uint64_t head = length < 64 ? length : 64;
  for (uint64_t i = 0; i < head; ++i) out[i] = static_cast<uint8_t>(pattern >> (8 * (i % width)));
  for (uint64_t done = head; done < length;) {
    const uint64_t n = done < length - done ? done : length - done;
    memcpy(out + done, out, n);
    done += n;
  }
  return Done();
}

// The DFA table format shared by DFA_SCAN and DFA_STEP's buffer form: `states` x 256 u32
// next-state words (row s, column byte b), then ceil(states / 32) u32 words of accept bitmap
// (bit s % 32 of word s / 32: state s accepts). It starts 4-byte aligned at `offset`.
struct DfaTable {
  const uint8_t* base = nullptr;
  uint32_t states = 0;
  MK_HOST_DEVICE static uint64_t Bytes(uint32_t states) {
    return (uint64_t{states} * memory::kDfaAlphabet + (uint64_t{states} + 31) / 32) * 4;
  }
  MK_HOST_DEVICE uint32_t Next(uint32_t state, uint8_t byte) const {
    return LoadU32(base + (uint64_t{state} * memory::kDfaAlphabet + byte) * 4);
  }
  MK_HOST_DEVICE bool Accepts(uint32_t state) const {
    const uint64_t word = uint64_t{states} * memory::kDfaAlphabet + state / 32;
    return (LoadU32(base + word * 4) >> (state % 32)) & 1u;
  }
};

// Resolves a DFA table of `states` states at `offset` of buffer `handle`; `states_arg` and
// `offset_arg` name those argument words in faults.
MK_HOST_DEVICE inline bool ResolveDfaTable(const ExecContext& ctx, uint32_t tenant, uint32_t handle,
                                           uint64_t offset, uint32_t states, uint32_t states_arg,
                                           uint32_t offset_arg, DfaTable* out, ExecResult* fault) {
  if (states == 0 || states > memory::kMaxDfaStates) {
    *fault = Fault(FaultCode::kBadArgument, states_arg);
    return false;
  }
  if (offset % 4 != 0) {
    *fault = Fault(FaultCode::kBadArgument, offset_arg);
    return false;
  }
  MemoryView table;
  if (!ResolveRange(ctx, tenant, handle, offset, DfaTable::Bytes(states), &table, fault)) {
    return false;
  }
  out->base = table.data + offset;
  out->states = states;
  return true;
}

// DFA_SCAN (0xFFF3): table handle, table offset lo, hi, states, input handle, input offset lo,
// hi, length lo, hi, start state. Runs the DFA over the input range from the start state.
// Results: final state; accepting positions (lo, hi: bytes after which the state accepts);
// the first of them relative to the range (lo, hi; all ones when none). A next state >=
// states faults BAD_ARGUMENT(detail 3).
MK_HOST_DEVICE inline ExecResult ExecuteDfaScan(const uint32_t* args, uint32_t tenant,
                                                const ExecContext& ctx) {
  const uint32_t states = args[3];
  const uint64_t in_offset = Arg64(args, 5), length = Arg64(args, 7);
  uint32_t state = args[9];
  if (length > memory::kMaxScanBytes) return Fault(FaultCode::kBadArgument, 7);
  DfaTable dfa;
  ExecResult fault;
  if (!ResolveDfaTable(ctx, tenant, args[0], Arg64(args, 1), states, 3, 1, &dfa, &fault)) {
    return fault;
  }
  if (state >= states) return Fault(FaultCode::kBadArgument, 9);
  MemoryView input;
  if (!ResolveRange(ctx, tenant, args[4], in_offset, length, &input, &fault)) return fault;
  const uint8_t* in = input.data + in_offset;
  const uint8_t* next = dfa.base;
  const uint8_t* accept = dfa.base + uint64_t{states} * memory::kDfaAlphabet * 4;
  uint64_t accepted = 0, first = memory::kNoOffset;
  for (uint64_t i = 0; i < length; ++i) {
    state = LoadU32(next + ((uint64_t{state} << 8) | in[i]) * 4);
    if (state >= states) return Fault(FaultCode::kBadArgument, 3);
    const uint32_t hit = (LoadU32(accept + uint64_t{state >> 5} * 4) >> (state & 31)) & 1u;
    if (hit != 0 && accepted == 0) first = i;
    accepted += hit;
  }
  ExecResult r = Done(5);
  r.results[0] = state;
  r.results[1] = static_cast<uint32_t>(accepted);
  r.results[2] = static_cast<uint32_t>(accepted >> 32);
  r.results[3] = static_cast<uint32_t>(first);
  r.results[4] = static_cast<uint32_t>(first >> 32);
  return r;
}

// DFA_STEP (6) with a buffer handle in ARG0: table handle, state, symbol (0..255), states,
// table offset lo, hi. Result: the next state (the table format of DFA_SCAN).
MK_HOST_DEVICE inline ExecResult ExecuteDfaStepInBuffer(const uint32_t* args, uint32_t tenant,
                                                        const ExecContext& ctx) {
  const uint32_t state = args[1], symbol = args[2], states = args[3];
  if (symbol >= memory::kDfaAlphabet) return Fault(FaultCode::kBadArgument, 2);
  DfaTable dfa;
  ExecResult fault;
  if (!ResolveDfaTable(ctx, tenant, args[0], Arg64(args, 4), states, 3, 4, &dfa, &fault)) {
    return fault;
  }
  if (state >= states) return Fault(FaultCode::kBadArgument, 1);
  ExecResult r = Done(1);
  r.results[0] = dfa.Next(state, static_cast<uint8_t>(symbol));
  if (r.results[0] >= states) return Fault(FaultCode::kBadArgument, 3);
  return r;
}

// GEMV (0xFFF4): W handle, W offset lo, hi, rows, cols, dtype (0 f32, 1 bf16), x handle,
// x offset lo, hi, y handle, y offset lo, hi. y[r] = sum_c W[r][c] * x[c] with W row-major
// (rows x cols of dtype), x (cols f32) and y (rows f32) in buffers; f32 accumulation. Offsets
// are multiples of the element size. At most kMaxSlotBytes of W per slot: split by row blocks
// (W offset + r0 * cols * size, y offset + r0 * 4). Result: rows.
MK_HOST_DEVICE inline ExecResult ExecuteGemv(const uint32_t* args, uint32_t tenant,
                                             const ExecContext& ctx) {
  const uint32_t rows = args[3], cols = args[4], dtype = args[5];
  if (dtype != memory::kDtypeF32 && dtype != memory::kDtypeBf16) {
    return Fault(FaultCode::kBadArgument, 5);
  }
  const uint32_t element = dtype == memory::kDtypeF32 ? 4 : 2;
  const uint64_t w_offset = Arg64(args, 1), x_offset = Arg64(args, 7), y_offset = Arg64(args, 10);
  // Each factor is bounded before the product (no wrap), and so are x and y.
  if (uint64_t{cols} * 4 > memory::kMaxSlotBytes) return Fault(FaultCode::kBadArgument, 4);
  if (uint64_t{rows} * 4 > memory::kMaxSlotBytes) return Fault(FaultCode::kBadArgument, 3);
  const uint64_t w_bytes = uint64_t{rows} * cols * element;  // below 2^22 * 2^22 * 4
  if (w_bytes > memory::kMaxSlotBytes) return Fault(FaultCode::kBadArgument, 3);
  if (w_offset % element != 0) return Fault(FaultCode::kBadArgument, 1);
  if (x_offset % 4 != 0) return Fault(FaultCode::kBadArgument, 7);
  if (y_offset % 4 != 0) return Fault(FaultCode::kBadArgument, 10);
  MemoryView w, x, y;
  ExecResult fault;
  if (!ResolveRange(ctx, tenant, args[0], w_offset, w_bytes, &w, &fault)) return fault;
  if (!ResolveRange(ctx, tenant, args[6], x_offset, uint64_t{cols} * 4, &x, &fault)) return fault;
  if (!ResolveRange(ctx, tenant, args[9], y_offset, uint64_t{rows} * 4, &y, &fault)) return fault;
  const uint8_t* wp = w.data + w_offset;
  const uint8_t* xp = x.data + x_offset;
  for (uint32_t r = 0; r < rows; ++r) {
    float sum = 0.0f;
    const uint8_t* row = wp + uint64_t{r} * cols * element;
    if (dtype == memory::kDtypeF32) {
      for (uint32_t c = 0; c < cols; ++c) {
        sum += LoadF32(row + uint64_t{c} * 4) * LoadF32(xp + uint64_t{c} * 4);
      }
    } else {
      for (uint32_t c = 0; c < cols; ++c) {
        uint16_t bits;
        memcpy(&bits, row + uint64_t{c} * 2, sizeof(bits));
        sum += Bf16ToF32(bits) * LoadF32(xp + c * 4ull);
      }
    }
    memcpy(y.data + y_offset + uint64_t{r} * 4, &sum, sizeof(sum));
  }
  ExecResult r = Done(1);
  r.results[0] = rows;
  return r;
}

// EMBEDDING_GATHER (0xFFF5): table handle, table offset lo, hi, row bytes, table rows, index
// handle, index offset lo, hi, count, out handle, out offset lo, hi. out row i = table row
// index[i] (u32 indices, offset a multiple of 4). An index >= table rows faults
// OUT_OF_BOUNDS(detail = its position i). At most kMaxSlotBytes of output. Result: count.
MK_HOST_DEVICE inline ExecResult ExecuteEmbeddingGather(const uint32_t* args, uint32_t tenant,
                                                        const ExecContext& ctx) {
  const uint32_t row_bytes = args[3], table_rows = args[4], count = args[8];
  const uint64_t table_offset = Arg64(args, 1), index_offset = Arg64(args, 6);
  const uint64_t out_offset = Arg64(args, 10);
  const uint64_t out_bytes = uint64_t{count} * row_bytes;
  if (row_bytes == 0) return Fault(FaultCode::kBadArgument, 3);
  if (count > memory::kMaxGatherRows || out_bytes > memory::kMaxSlotBytes) {
    return Fault(FaultCode::kBadArgument, 8);
  }
  if (index_offset % 4 != 0) return Fault(FaultCode::kBadArgument, 6);
  MemoryView table, index, out;
  ExecResult fault;
  if (!ResolveRange(ctx, tenant, args[0], table_offset, uint64_t{table_rows} * row_bytes, &table,
                    &fault)) {
    return fault;
  }
  if (!ResolveRange(ctx, tenant, args[5], index_offset, uint64_t{count} * 4, &index, &fault)) {
    return fault;
  }
  if (!ResolveRange(ctx, tenant, args[9], out_offset, out_bytes, &out, &fault)) return fault;
  for (uint32_t i = 0; i < count; ++i) {
    const uint32_t row = LoadU32(index.data + index_offset + uint64_t{i} * 4);
    if (row >= table_rows) return Fault(FaultCode::kOutOfBounds, i);
    MoveBytes(out.data + out_offset + uint64_t{i} * row_bytes,
              table.data + table_offset + uint64_t{row} * row_bytes, row_bytes);
  }
  ExecResult r = Done(1);
  r.results[0] = count;
  return r;
}

// Runs a memory opcode (IsMemoryOpcode) for `tenant`.
MK_HOST_DEVICE inline bool IsMemoryOpcode(uint32_t op) {
  return op >= opcode::kCopy && op <= opcode::kEmbeddingGather;
}
MK_HOST_DEVICE inline ExecResult ExecuteMemoryOp(uint32_t op, const uint32_t* args, uint32_t tenant,
                                                 const ExecContext& ctx) {
  switch (op) {
    case opcode::kCopy:
      return ExecuteCopy(args, tenant, ctx);
    case opcode::kFill:
      return ExecuteFill(args, tenant, ctx);
    case opcode::kDfaScan:
      return ExecuteDfaScan(args, tenant, ctx);
    case opcode::kGemv:
      return ExecuteGemv(args, tenant, ctx);
    case opcode::kEmbeddingGather:
      return ExecuteEmbeddingGather(args, tenant, ctx);
    default:
      return Fault(FaultCode::kUnknownOpcode, op);
  }
}

}  // namespace mk::protocol

#endif  // MK_ENGINE_MEMORY_OPCODES_H_
