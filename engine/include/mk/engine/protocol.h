// The wire protocol shared by clients, the server, both engines and the GPU (docs/protocol.md).
//
// This header compiles unchanged under g++ and nvcc: fixed-width types only, no STL containers,
// no <cuda_runtime.h>. Every buffer is an array of little-endian uint32 words; every size and
// offset below is pinned by a static_assert so a layout change cannot slip through silently.
//
// docs/protocol.md writes down the choices this project made where vyre's protocol leaves one:
// - Io-queue STATUS value 3 (RESERVED) marks a slot an engine worker has taken with a
//   compare-and-swap and is still writing; the host never claims it.
// - Debug-log cursor: it counts words reserved, including reservations past capacity; records
//   beyond capacity are not written, and overflow = (cursor - capacity words) / 4.
// - PACKED_SLOT layout: see `packed` below.
// - Control-buffer tail: tenant scratch windows start at word 160 (OBSERVABLES), one window of
//   `scratch_words` per tenant, followed by the extended tenant-mask table (one word per tenant)
//   that TENANT_MASK_BASE points at when more than 29 tenants are configured.
#ifndef MK_ENGINE_PROTOCOL_H_
#define MK_ENGINE_PROTOCOL_H_

#include <stdint.h>

#if defined(__CUDACC__)
#define MK_HOST_DEVICE __host__ __device__
#else
#define MK_HOST_DEVICE
#endif

namespace mk::protocol {

// ---------------------------------------------------------------------------------------------
// Section 1: ring slot (64 bytes = 16 words).
inline constexpr uint32_t kSlotWords = 16;
inline constexpr uint32_t kSlotBytes = 64;
inline constexpr uint32_t kArgWords = 12;

inline constexpr uint32_t kWordStatus = 0;
inline constexpr uint32_t kWordOpcode = 1;
inline constexpr uint32_t kWordTenant = 2;
inline constexpr uint32_t kWordPriority = 3;
inline constexpr uint32_t kWordArg0 = 4;

static_assert(kSlotWords * sizeof(uint32_t) == kSlotBytes, "slot is 64 bytes");
static_assert(kWordArg0 + kArgWords == kSlotWords, "12 argument words fill the slot");
static_assert(kWordStatus == 0 && kWordOpcode == 1 && kWordTenant == 2 && kWordPriority == 3,
              "header word offsets are fixed by the protocol");

enum class SlotStatus : uint32_t {
  kEmpty = 0,
  kPublished = 1,
  kClaimed = 2,
  kDone = 3,
  kWaitIo = 4,
  kYield = 5,
  kRequeue = 6,
  kFault = 7,
};
inline constexpr uint32_t kSlotStatusCount = 8;
static_assert(static_cast<uint32_t>(SlotStatus::kFault) + 1 == kSlotStatusCount);

MK_HOST_DEVICE constexpr bool IsTerminal(SlotStatus s) {
  return s == SlotStatus::kDone || s == SlotStatus::kFault;
}
MK_HOST_DEVICE constexpr bool IsClaimable(SlotStatus s) {
  return s == SlotStatus::kPublished || s == SlotStatus::kYield || s == SlotStatus::kRequeue;
}

enum class Priority : uint32_t {
  kCritical = 0,
  kHigh = 1,
  kNormal = 2,
  kLow = 3,
  kIdle = 4,
};
inline constexpr uint32_t kPriorityCount = 5;
// Names for messages, indexed by priority (= partition).
inline constexpr const char* kPriorityNames[kPriorityCount] = {"CRITICAL", "HIGH", "NORMAL", "LOW",
                                                               "IDLE"};
inline constexpr uint32_t kDefaultPriority = static_cast<uint32_t>(Priority::kNormal);

// ---------------------------------------------------------------------------------------------
// Section 3: opcodes and fault codes.
namespace opcode {
inline constexpr uint32_t kNop = 0;
inline constexpr uint32_t kStoreU32 = 1;
inline constexpr uint32_t kAtomicAdd = 2;
inline constexpr uint32_t kLoadU32 = 3;
inline constexpr uint32_t kCompareSwap = 4;
inline constexpr uint32_t kMemcpy = 5;
inline constexpr uint32_t kDfaStep = 6;
inline constexpr uint32_t kBatchFence = 7;
inline constexpr uint32_t kChecksum = 0xFFF0;
inline constexpr uint32_t kComputeFirst = 0xFFF1;
// The memory opcodes (docs/buffers.md has their arguments; mk/engine/memory_opcodes.h runs them).
inline constexpr uint32_t kCopy = 0xFFF1;
inline constexpr uint32_t kFill = 0xFFF2;
inline constexpr uint32_t kDfaScan = 0xFFF3;
inline constexpr uint32_t kGemv = 0xFFF4;
inline constexpr uint32_t kEmbeddingGather = 0xFFF5;
inline constexpr uint32_t kComputeLast = 0xFFFC;
inline constexpr uint32_t kLoadMiss = 0xFFFD;
inline constexpr uint32_t kPrintf = 0xFFFE;
inline constexpr uint32_t kPackedSlot = 0x80000001u;
inline constexpr uint32_t kShutdown = 0xFFFFFFFFu;

// User opcode ranges (inclusive).
inline constexpr uint32_t kUserLowFirst = 8;
inline constexpr uint32_t kUserLowLast = 0xFFEF;
inline constexpr uint32_t kUserHighFirst = 0x10000;
inline constexpr uint32_t kUserHighLast = 0x7FFFFFFF;

// Per-opcode metric words exist for opcodes 0..31.
inline constexpr uint32_t kMetricOpcodes = 32;

MK_HOST_DEVICE constexpr bool IsUserOpcode(uint32_t op) {
  return (op >= kUserLowFirst && op <= kUserLowLast) ||
         (op >= kUserHighFirst && op <= kUserHighLast);
}
}  // namespace opcode

enum class FaultCode : uint32_t {
  kNone = 0,
  kUnknownOpcode = 1,
  kOutOfBounds = 2,
  kBadArgument = 3,
  kResourceNotFound = 4,
  kIoError = 5,
  kEngineRestart = 6,
  kTenantDisabled = 7,
  kResourceExhausted = 8,
};

// Buffer handles (tenant buffers: docs/buffers.md). A handle names one buffer of one tenant;
// resources keep their ids (below 2^31), so one argument word can name either. Layout:
// bit 31 set, bits 20..30 a generation (bumped when the entry is reused, so a freed buffer's
// handle never names its successor), bits 0..19 the table entry.
namespace buffer {
inline constexpr uint32_t kHandleBit = 0x80000000u;
inline constexpr uint32_t kIndexBits = 20;
inline constexpr uint32_t kMaxBuffers = 1u << kIndexBits;
inline constexpr uint32_t kGenerationMask = 0x7FFu;
MK_HOST_DEVICE constexpr bool IsBufferHandle(uint32_t handle) { return (handle & kHandleBit) != 0; }
MK_HOST_DEVICE constexpr uint32_t HandleIndex(uint32_t handle) {
  return handle & (kMaxBuffers - 1);
}
MK_HOST_DEVICE constexpr uint32_t HandleGeneration(uint32_t handle) {
  return (handle >> kIndexBits) & kGenerationMask;
}
MK_HOST_DEVICE constexpr uint32_t MakeHandle(uint32_t index, uint32_t generation) {
  return kHandleBit | ((generation & kGenerationMask) << kIndexBits) | (index & (kMaxBuffers - 1));
}
// One entry of the table executors resolve handles through (host memory on the CPU engine).
// `handle` is written last when a buffer is created (release) and cleared first when it is
// freed; an executor that reads its slot's handle there (acquire) may read the rest. An entry
// is reused only after every slot published before its buffer was freed has left the ring, so
// a view resolved before the free stays valid until the slot is done.
struct Descriptor {
  uint32_t handle;  // the live handle naming this entry; 0 when free
  uint32_t owner;   // the tenant
  uint64_t data;    // address of the bytes
  uint64_t bytes;
  uint64_t reserved;
};
static_assert(sizeof(Descriptor) == 32);
}  // namespace buffer

// PACKED_SLOT (opcode 0x80000001) argument layout, in words:
//   ARG0            inner-op count n (1..kMaxInnerOps)
//   ARG1..          n records, each: one header word (bits 0..15 opcode, bits 16..31 argc),
//                   then argc argument words. Records are packed back to back.
// Inner ops are the scratch built-ins 0..5 (NOP, STORE_U32, ATOMIC_ADD, LOAD_U32,
// COMPARE_SWAP, MEMCPY). Every inner op runs, in order. Result word i holds inner op i's
// result0 (0 for ops without a result). The first inner op that faults stops the slot with that
// fault; ARG1 (detail) then holds the inner op's index.
namespace packed {
inline constexpr uint32_t kMaxInnerOps = kArgWords - 1;  // n NOPs need 1 + n words
inline constexpr uint32_t kMaxInnerArgs = 3;
MK_HOST_DEVICE constexpr uint32_t HeaderWord(uint32_t op, uint32_t argc) {
  return (op & 0xFFFFu) | (argc << 16);
}
MK_HOST_DEVICE constexpr uint32_t HeaderOpcode(uint32_t header) { return header & 0xFFFFu; }
MK_HOST_DEVICE constexpr uint32_t HeaderArgc(uint32_t header) { return header >> 16; }
MK_HOST_DEVICE constexpr bool IsInnerOpcode(uint32_t op) { return op <= opcode::kMemcpy; }
}  // namespace packed

// ---------------------------------------------------------------------------------------------
// Section 2: control buffer.
namespace control {
inline constexpr uint32_t kShutdown = 0;
inline constexpr uint32_t kDoneCount = 1;
inline constexpr uint32_t kTenantMaskBase = 2;
inline constexpr uint32_t kCompatMaskFirst = 3;
inline constexpr uint32_t kCompatMaskTenants = 29;
inline constexpr uint32_t kQuotaFirst = 32;
inline constexpr uint32_t kQuotaCount = 32;
inline constexpr uint32_t kTenantFairnessFirst = 64;
inline constexpr uint32_t kTenantFairnessCount = 32;
inline constexpr uint32_t kOpcodeMetricsFirst = 96;
inline constexpr uint32_t kOpcodeMetricsCount = 32;
inline constexpr uint32_t kEpoch = 128;
inline constexpr uint32_t kPriorityPartitionFirst = 129;
inline constexpr uint32_t kPriorityPartitionCount = 6;
inline constexpr uint32_t kStarvationCounter = 135;
inline constexpr uint32_t kPriorityFairnessFirst = 136;
inline constexpr uint32_t kReservedFirst = 141;
inline constexpr uint32_t kObservablesFirst = 160;
inline constexpr uint32_t kMinWords = 160;
// After this many consecutive CRITICAL/HIGH claims the next claim prefers lower priorities.
inline constexpr uint32_t kStarvationLimit = 16;

static_assert(kCompatMaskFirst + kCompatMaskTenants == kQuotaFirst);
static_assert(kQuotaFirst + kQuotaCount == kTenantFairnessFirst);
static_assert(kTenantFairnessFirst + kTenantFairnessCount == kOpcodeMetricsFirst);
static_assert(kOpcodeMetricsFirst + kOpcodeMetricsCount == kEpoch);
static_assert(kEpoch + 1 == kPriorityPartitionFirst);
static_assert(kPriorityPartitionFirst + kPriorityPartitionCount == kStarvationCounter);
static_assert(kStarvationCounter + 1 == kPriorityFairnessFirst);
static_assert(kPriorityFairnessFirst + kPriorityCount == kReservedFirst);
static_assert(kReservedFirst + 19 == kObservablesFirst);
static_assert(kOpcodeMetricsCount == opcode::kMetricOpcodes);

// Word offsets of the variable tail, from the two sizes an engine is configured with.
// Used by host and device code alike.
struct Layout {
  uint32_t max_tenants;    // tenants 0..max_tenants-1 may publish
  uint32_t scratch_words;  // observable words per tenant window

  MK_HOST_DEVICE constexpr uint32_t ScratchFirst(uint32_t tenant) const {
    return kObservablesFirst + tenant * scratch_words;
  }
  // The mask table: the compat table (word 3) when it fits, else the extended table.
  MK_HOST_DEVICE constexpr uint32_t MaskBase() const {
    return max_tenants <= kCompatMaskTenants ? kCompatMaskFirst
                                             : kObservablesFirst + max_tenants * scratch_words;
  }
  MK_HOST_DEVICE constexpr uint32_t TotalWords() const {
    const uint32_t end_of_scratch = kObservablesFirst + max_tenants * scratch_words;
    return max_tenants <= kCompatMaskTenants ? end_of_scratch : end_of_scratch + max_tenants;
  }
};
static_assert(Layout{1024, 16}.TotalWords() == 160 + 1024 * 16 + 1024);
static_assert(Layout{8, 16}.MaskBase() == kCompatMaskFirst);
}  // namespace control

// ---------------------------------------------------------------------------------------------
// Section 4: debug log.
namespace debug_log {
inline constexpr uint32_t kCursorWord = 0;
inline constexpr uint32_t kFirstRecordWord = 1;
inline constexpr uint32_t kRecordWords = 4;  // fmt_id, arg1, arg2, slot index
inline constexpr uint32_t kMinRecords = 64;
MK_HOST_DEVICE constexpr uint32_t BufferWords(uint32_t capacity_records) {
  return kFirstRecordWord + capacity_records * kRecordWords;
}
static_assert(BufferWords(kMinRecords) == 257);
}  // namespace debug_log

// ---------------------------------------------------------------------------------------------
// Section 5: io queue.
namespace io {
inline constexpr uint32_t kSlotWords = 8;
inline constexpr uint32_t kMinSlots = 64;

inline constexpr uint32_t kWordOpType = 0;
inline constexpr uint32_t kWordSrcHandle = 1;
inline constexpr uint32_t kWordDstHandle = 2;
inline constexpr uint32_t kWordOffsetLo = 3;
inline constexpr uint32_t kWordOffsetHi = 4;
inline constexpr uint32_t kWordByteCount = 5;
inline constexpr uint32_t kWordStatus = 6;
inline constexpr uint32_t kWordTag = 7;
static_assert(kWordTag + 1 == kSlotWords);

enum class OpType : uint32_t { kRead = 1, kWrite = 2, kFence = 3 };

enum class IoStatus : uint32_t {
  kEmpty = 0,
  kPublished = 1,
  kClaimed = 2,
  kReserved = 3,  // extension: an engine worker won the CAS and is writing the request
  kOk = 0x10,
  kError = 0x11,
};
}  // namespace io

}  // namespace mk::protocol

#endif  // MK_ENGINE_PROTOCOL_H_
