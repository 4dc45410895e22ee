// libFuzzer target: the engine's publish validation (engine/src/host/publish_validation.h), the
// last check before slots reach the ring, against the interpreter that runs them.
//
// Input: a batch of 0..16 slots (opcodes drawn from the built-ins, the custom range's edges,
// SHUTDOWN and any value; priorities around the valid range; PACKED_SLOT arguments shaped like
// inner-op records; BATCH_FENCE counts around the slot's index), then per accepted slot a
// tenant and scratch contents.
// Properties:
// - ValidatePublish accepts exactly the batches docs/protocol.md allows (every opcode a
//   built-in or registered custom one, never SHUTDOWN; priority 0..4; a fence names at most
//   the slots before it; a PACKED_SLOT's records decode), and a refusal names the first bad
//   slot ("slot <i>: ...");
// - validation never accepts what the engine would refuse to run: every slot of an accepted
//   batch, run by the interpreter (Execute<ProductOpcodes>, no io hooks), ends DONE or FAULT,
//   never UNKNOWN_OPCODE, BAD_ARGUMENT only for DFA_STEP's argument values, a PACKED_SLOT with
//   one result word per decoded inner op; the publisher's per-priority arrays are indexed in
//   range;
// - every prefix of an accepted batch is accepted.
#include <cstdint>
#include <vector>

#include "absl/strings/match.h"
#include "fuzz/libfuzzer/fuzz_support.h"
#include "host/publish_validation.h"
#include "mk/engine/control_buffer.h"
#include "mk/engine/engine_stats.h"
#include "mk/engine/interpreter.h"
#include "mk/engine/opcode_registry.h"
#include "mk/engine/packed_slot.h"
#include "mk/engine/protocol.h"

namespace mk::engine {
namespace {

namespace op = protocol::opcode;
namespace pk = protocol::packed;
using protocol::ExecResult;
using protocol::FaultCode;
using protocol::SlotStatus;

constexpr uint32_t kOpcodes[] = {
    // The scratch built-ins, BATCH_FENCE, SCRATCH_SUM (custom, registered) and 9 (not).
    op::kNop, op::kStoreU32, op::kAtomicAdd, op::kLoadU32, op::kCompareSwap, op::kMemcpy,
    op::kDfaStep, op::kBatchFence, 8, 9,
    // CHECKSUM, the memory opcodes, the reserved rest of the compute range (its first and last),
    // LOAD_MISS, PRINTF, PACKED_SLOT, SHUTDOWN.
    op::kChecksum, op::kCopy, op::kFill, op::kDfaScan, op::kGemv, op::kEmbeddingGather,
    op::kEmbeddingGather + 1, op::kComputeLast, op::kLoadMiss, op::kPrintf, op::kPackedSlot,
    op::kShutdown,
    // The user ranges' edges (unregistered) and values around them.
    op::kUserLowLast, op::kUserHighFirst, op::kUserHighLast, 0x80000000u, 0x80000002u, 0xFFFFu};
constexpr uint32_t kTenants = 4;
constexpr uint32_t kScratchWords = 32;

uint32_t Word(fuzz::Input& in) {
  const uint8_t kind = in.U8();
  return kind < 200 ? kind % 40 : in.U32();
}

SlotPayload MakeSlot(fuzz::Input& in, uint32_t index) {
  SlotPayload s;
  const uint8_t pick = in.U8();
  s.opcode = pick < 232 ? kOpcodes[pick % std::size(kOpcodes)] : in.U32();
  const uint8_t priority = in.U8();
  s.priority = priority < 240 ? priority % (protocol::kPriorityCount + 2) : in.U32();
  for (uint32_t& a : s.args) a = Word(in);
  if (s.opcode == op::kBatchFence && in.Bool()) s.args[0] = index + in.Below(3) - 1;
  if (s.opcode == op::kPackedSlot) {
    s.args[0] = in.U8() < 200 ? 1 + in.Below(pk::kMaxInnerOps) : in.U32();
    for (uint32_t w = 1; w < protocol::kArgWords; ++w) {
      const uint8_t kind = in.U8();
      s.args[w] = kind < 160 ? pk::HeaderWord(kind % 8, (kind >> 3) % 5) : kind % 20;
    }
  }
  return s;
}

bool IsMemoryOp(uint32_t opcode) { return opcode >= 0xFFF1 && opcode <= 0xFFF5; }

bool KnownOpcode(uint32_t opcode) {
  return opcode <= op::kBatchFence || opcode == op::kChecksum || opcode == op::kLoadMiss ||
         opcode == op::kPrintf || opcode == op::kPackedSlot || IsMemoryOp(opcode) ||
         protocol::ProductOpcodes::Has(opcode);
}

// docs/buffers.md's per-slot limits, restated here (not taken from the validator).
bool MemoryArgsAllowed(const SlotPayload& s) {
  constexpr uint64_t kMiB16 = 16ull << 20;
  const auto u64 = [&](int lo) { return uint64_t{s.args[lo]} | uint64_t{s.args[lo + 1]} << 32; };
  const auto& a = s.args;
  switch (s.opcode) {
    case op::kCopy:
      return u64(6) <= kMiB16;
    case op::kFill:
      return u64(3) <= kMiB16 && (a[6] == 0 || a[6] == 1 || a[6] == 2 || a[6] == 4);
    case op::kDfaScan:
      return u64(7) <= (256u << 10) && a[3] >= 1 && a[3] <= 4096 && a[9] < a[3];
    case op::kGemv: {
      if (a[5] > 1 || uint64_t{a[4]} * 4 > kMiB16 || uint64_t{a[3]} * 4 > kMiB16) return false;
      return uint64_t{a[3]} * a[4] * (a[5] == 0 ? 4 : 2) <= kMiB16;
    }
    case op::kEmbeddingGather:
      return a[3] != 0 && a[8] <= 65536 && uint64_t{a[8]} * a[3] <= kMiB16;
    default:
      return true;
  }
}

bool Allowed(const SlotPayload& s, size_t index) {
  if (s.opcode == op::kShutdown || !KnownOpcode(s.opcode)) return false;
  if (s.priority >= protocol::kPriorityCount) return false;
  if (s.opcode == op::kBatchFence && s.args[0] > index) return false;
  if (s.opcode == op::kPackedSlot) return DecodePackedSlot(s.args).ok();
  return MemoryArgsAllowed(s);
}

// Runs every slot of an accepted batch the way an executor would.
void CheckRuns(absl::Span<const SlotPayload> batch, fuzz::Input& in) {
  const protocol::control::Layout layout{kTenants, kScratchWords};
  std::vector<uint32_t> control(layout.TotalWords());
  const absl::StatusOr<ControlView> view = ControlView::Create(absl::MakeSpan(control), layout);
  MK_FUZZ_CHECK(view.ok(), view.status().ToString());
  view->Initialize();
  std::vector<uint32_t> log(protocol::debug_log::BufferWords(protocol::debug_log::kMinRecords));
  protocol::ExecContext ctx;
  ctx.control = control.data();
  ctx.layout = layout;
  ctx.debug_log = log.data();
  ctx.debug_log_records = protocol::debug_log::kMinRecords;
  for (size_t i = 0; i < batch.size(); ++i) {
    const SlotPayload& s = batch[i];
    MK_FUZZ_CHECK(s.priority < protocol::kPriorityCount, "slot ", i, " priority ", s.priority);
    MK_FUZZ_CHECK(static_cast<uint32_t>(OpcodeClassOf(s.opcode)) < kOpcodeClassCount, "class");
    uint32_t slot[protocol::kSlotWords] = {};
    slot[protocol::kWordStatus] = static_cast<uint32_t>(SlotStatus::kClaimed);
    slot[protocol::kWordOpcode] = s.opcode;
    slot[protocol::kWordTenant] = in.Below(kTenants);
    slot[protocol::kWordPriority] = s.priority;
    std::copy(s.args.begin(), s.args.end(), slot + protocol::kWordArg0);
    absl::Span<uint32_t> scratch = *view->TenantScratch(slot[protocol::kWordTenant]);
    for (uint32_t& w : scratch) w = in.Below(kScratchWords + 2);
    const ExecResult r =
        protocol::Execute<protocol::ProductOpcodes>(slot, static_cast<uint32_t>(i), ctx);
    MK_FUZZ_CHECK(r.status == SlotStatus::kDone || r.status == SlotStatus::kFault, "slot ", i,
                  " (opcode ", s.opcode, ") ended with status ", static_cast<uint32_t>(r.status));
    MK_FUZZ_CHECK(r.result_count <= protocol::kArgWords, "result count ", r.result_count);
    if (r.status == SlotStatus::kFault) {
      const auto code = static_cast<FaultCode>(r.results[0]);
      MK_FUZZ_CHECK(code != FaultCode::kUnknownOpcode, "accepted slot ", i, " opcode ", s.opcode,
                    " faults UNKNOWN_OPCODE");
      // What publish cannot check without memory (alignment, a DFA's transitions) may still
      // fault BAD_ARGUMENT: DFA_STEP and the memory opcodes.
      MK_FUZZ_CHECK(
          code != FaultCode::kBadArgument || s.opcode == op::kDfaStep || IsMemoryOp(s.opcode),
          "accepted slot ", i, " opcode ", s.opcode, " faults BAD_ARGUMENT (detail ", r.results[1],
          ")");
    }
    if (s.opcode == op::kPackedSlot) {
      const absl::StatusOr<std::vector<InnerOp>> ops = DecodePackedSlot(s.args);
      MK_FUZZ_CHECK(ops.ok(), ops.status().ToString());
      MK_FUZZ_CHECK(r.status == SlotStatus::kFault ? r.results[1] < ops->size()
                                                   : r.result_count == ops->size(),
                    "PACKED_SLOT of ", ops->size(), " ops: status ",
                    static_cast<uint32_t>(r.status), " count ", r.result_count, " detail ",
                    r.results[1]);
    }
  }
}

void Fuzz(fuzz::Input& in) {
  std::vector<SlotPayload> batch(in.Below(17));
  for (size_t i = 0; i < batch.size(); ++i) batch[i] = MakeSlot(in, static_cast<uint32_t>(i));
  const absl::Status s = host::ValidatePublish(batch);
  if (batch.empty()) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(s), s.ToString());
    return;
  }
  size_t first_bad = batch.size();
  for (size_t i = 0; i < batch.size() && first_bad == batch.size(); ++i) {
    if (!Allowed(batch[i], i)) first_bad = i;
  }
  MK_FUZZ_CHECK(s.ok() == (first_bad == batch.size()), s.ToString(),
                " (first bad slot: ", first_bad, ")");
  if (!s.ok()) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(s) &&
                      absl::StartsWith(s.message(), absl::StrCat("slot ", first_bad, ": ")),
                  s.ToString(), " should name slot ", first_bad);
    return;
  }
  const size_t prefix = 1 + in.Below(static_cast<uint32_t>(batch.size()));
  const absl::Status p = host::ValidatePublish(absl::MakeConstSpan(batch).first(prefix));
  MK_FUZZ_CHECK(p.ok(), "prefix of ", prefix, ": ", p.ToString());
  CheckRuns(batch, in);
}

}  // namespace
}  // namespace mk::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mk::fuzz::Input in(data, size);
  mk::engine::Fuzz(in);
  return 0;
}
