// SAXPY (opcode 0x100): y = a * x + y over n f32 values of two tenant buffers. A worked example
// of an opcode added outside the engine's sources (README.md here): built into both engines
// with -DMK_EXAMPLE_OPCODES=ON, which points MK_EXTRA_OPCODES_HEADER at this file.
//
// Arguments: x handle, x offset lo, hi, y handle, y offset lo, hi, n, a (f32 bits).
// Faults: RESOURCE_NOT_FOUND / OUT_OF_BOUNDS naming a handle (ResolveRange), BAD_ARGUMENT(6)
// when n x 4 exceeds one slot's 16 MiB, BAD_ARGUMENT(1 or 4) for an offset not a multiple of 4.
// Result: n. Deterministic: each y[i] depends on x[i] and y[i] only.
#ifndef MK_EXAMPLES_CUSTOM_OPCODE_SAXPY_OP_H_
#define MK_EXAMPLES_CUSTOM_OPCODE_SAXPY_OP_H_

#include <stdint.h>
#include <string.h>

#include "mk/engine/memory_opcodes.h"

namespace mk::examples {

struct SaxpyOp {
  static constexpr uint32_t kOpcode = 0x100;
  static constexpr const char* kName = "SAXPY";
  static constexpr uint32_t kArgCount = 8;
  MK_HOST_DEVICE static protocol::ExecResult Run(const uint32_t* args, const protocol::Scratch&,
                                                 protocol::ExecContext& ctx) {
    using protocol::ExecResult;
    using protocol::FaultCode;
    const uint64_t x_offset = protocol::Arg64(args, 1), y_offset = protocol::Arg64(args, 4);
    const uint32_t n = args[6];
    float a;
    memcpy(&a, &args[7], sizeof(a));
    const uint64_t bytes = uint64_t{n} * 4;
    if (bytes > protocol::memory::kMaxSlotBytes) return protocol::Fault(FaultCode::kBadArgument, 6);
    if (x_offset % 4 != 0) return protocol::Fault(FaultCode::kBadArgument, 1);
    if (y_offset % 4 != 0) return protocol::Fault(FaultCode::kBadArgument, 4);
    protocol::MemoryView x, y;
    ExecResult fault;
    if (!protocol::ResolveRange(ctx, ctx.tenant, args[0], x_offset, bytes, &x, &fault))
      return fault;
    if (!protocol::ResolveRange(ctx, ctx.tenant, args[3], y_offset, bytes, &y, &fault))
      return fault;
    for (uint32_t i = 0; i < n; ++i) {
      float xi, yi;
      memcpy(&xi, x.data + x_offset + uint64_t{i} * 4, 4);
      memcpy(&yi, y.data + y_offset + uint64_t{i} * 4, 4);
      yi = a * xi + yi;
      memcpy(y.data + y_offset + uint64_t{i} * 4, &yi, 4);
    }
    ExecResult r = protocol::Done(1);
    r.results[0] = n;
    return r;
  }
};

}  // namespace mk::examples

#define MK_EXTRA_OPCODES , ::mk::examples::SaxpyOp

#endif  // MK_EXAMPLES_CUSTOM_OPCODE_SAXPY_OP_H_
