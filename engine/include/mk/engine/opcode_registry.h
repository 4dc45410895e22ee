// Compile-time registration of custom (user) opcodes.
//
// A custom opcode is a type with
//   static constexpr uint32_t kOpcode;        // in a user range (8..0xFFEF, 0x10000..0x7FFFFFFF)
//   static constexpr const char* kName;
//   static constexpr uint32_t kArgCount;      // argument words the host must validate
//   MK_HOST_DEVICE static ExecResult Run(const uint32_t* args, const Scratch&, ExecContext&);
// and is registered by listing it in an `OpcodeRegistry<...>`. Registration is checked at
// compile time (user range, no duplicates: the static_assert next to the list), dispatch is a fold
// over the list (no tables, no virtual calls, valid in device code), and the host validates
// publishes against the same list, so an opcode without a handler never reaches a worker.
//
// A handler that works on tenant buffers resolves its handles with ResolveRange(ctx,
// ctx.tenant, handle, offset, length, &view, &fault) (memory_opcodes.h): bounds-checked views,
// faults RESOURCE_NOT_FOUND / OUT_OF_BOUNDS naming the handle. It runs on one thread per slot;
// keep one slot's work to about a millisecond (split larger work over slots), and make it
// deterministic: both engines must return the same results.
//
// `ProductOpcodes` is the list both engines are built with. To add an opcode, define its type
// below (or in a header included here) and append it to the list, or, without editing this
// file, build with -DMK_EXTRA_OPCODES_HEADER=<header> (CMake: MK_EXTRA_OPCODES_HEADER=path):
// that header defines its opcode types and `#define MK_EXTRA_OPCODES , TypeA, TypeB` (a list
// starting with a comma). examples/custom_opcode/ is a worked example.
#ifndef MK_ENGINE_OPCODE_REGISTRY_H_
#define MK_ENGINE_OPCODE_REGISTRY_H_

#include <stdint.h>

#include "mk/engine/interpreter.h"
#include "mk/engine/memory_opcodes.h"
#include "mk/engine/protocol.h"

namespace mk::protocol {

template <typename... Ops>
struct OpcodeRegistry {
  static constexpr uint32_t kCount = sizeof...(Ops);

  static constexpr bool Valid() {
    const uint32_t ops[] = {Ops::kOpcode..., 0};
    for (uint32_t i = 0; i < kCount; ++i) {
      if (!opcode::IsUserOpcode(ops[i])) return false;
      for (uint32_t j = i + 1; j < kCount; ++j) {
        if (ops[i] == ops[j]) return false;
      }
    }
    return true;
  }

  MK_HOST_DEVICE static bool Has(uint32_t op) { return ((op == Ops::kOpcode) || ... || false); }

  // Argument words the opcode reads; 0 for an unknown opcode.
  MK_HOST_DEVICE static uint32_t ArgCount(uint32_t op) {
    uint32_t n = 0;
    ((op == Ops::kOpcode ? (n = Ops::kArgCount, true) : false) || ... || false);
    return n;
  }

  MK_HOST_DEVICE static ExecResult Run(uint32_t op, const uint32_t* args, const Scratch& s,
                                       ExecContext& ctx) {
    ExecResult r = Fault(FaultCode::kUnknownOpcode, op);
    ((op == Ops::kOpcode ? (r = Ops::Run(args, s, ctx), true) : false) || ... || false);
    return r;
  }
};

// SCRATCH_SUM (8): index, count -> the 64-bit sum of scratch[index .. index+count) as
// result0 (low word) and result1 (high word). A reduction over a tenant's window in one slot.
struct ScratchSumOp {
  static constexpr uint32_t kOpcode = 8;
  static constexpr const char* kName = "SCRATCH_SUM";
  static constexpr uint32_t kArgCount = 2;
  MK_HOST_DEVICE static ExecResult Run(const uint32_t* args, const Scratch& s, ExecContext&) {
    if (!s.InRange(args[0], args[1])) return Fault(FaultCode::kOutOfBounds, args[0]);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < args[1]; ++i) sum += AtomicLoad(&s.words[args[0] + i]);
    ExecResult r = Done(2);
    r.results[0] = static_cast<uint32_t>(sum);
    r.results[1] = static_cast<uint32_t>(sum >> 32);
    return r;
  }
};

}  // namespace mk::protocol

#if defined(MK_EXTRA_OPCODES_HEADER)
#include MK_EXTRA_OPCODES_HEADER
#endif
#if !defined(MK_EXTRA_OPCODES)
#define MK_EXTRA_OPCODES
#endif

namespace mk::protocol {

using ProductOpcodes = OpcodeRegistry<ScratchSumOp MK_EXTRA_OPCODES>;
static_assert(ProductOpcodes::Valid(), "custom opcodes must be unique and inside the user ranges");

}  // namespace mk::protocol

#endif  // MK_ENGINE_OPCODE_REGISTRY_H_
