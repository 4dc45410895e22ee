// The shared interpreter, run directly on the host (the CUDA engine compiles the same code).
#include "mk/engine/interpreter.h"

#include <vector>

#include "gtest/gtest.h"
#include "mk/engine/debug_log.h"
#include "mk/engine/opcode_registry.h"
#include "mk/engine/packed_slot.h"

namespace mk::protocol {
namespace {

using engine::InnerOp;

class InterpreterTest : public ::testing::Test {
 protected:
  InterpreterTest()
      : control_(control::Layout{4, 16}.TotalWords()), log_(debug_log::BufferWords(64)) {
    ctx_.control = control_.data();
    ctx_.layout = {4, 16};
    ctx_.debug_log = log_.data();
    ctx_.debug_log_records = 64;
  }
  ExecResult Run(uint32_t op, std::vector<uint32_t> args, uint32_t tenant = 1) {
    uint32_t slot[kSlotWords] = {};
    slot[kWordOpcode] = op;
    slot[kWordTenant] = tenant;
    for (size_t i = 0; i < args.size(); ++i) slot[kWordArg0 + i] = args[i];
    return Execute<ProductOpcodes>(slot, 7, ctx_);
  }
  uint32_t& Scratch(uint32_t tenant, uint32_t index) {
    return control_[control::kObservablesFirst + tenant * 16 + index];
  }
  static void ExpectFault(const ExecResult& r, FaultCode code, uint32_t detail) {
    EXPECT_EQ(r.status, SlotStatus::kFault);
    EXPECT_EQ(r.results[0], static_cast<uint32_t>(code));
    EXPECT_EQ(r.results[1], detail);
  }
  std::vector<uint32_t> control_;
  std::vector<uint32_t> log_;
  ExecContext ctx_;
};

TEST_F(InterpreterTest, NopHasNoResults) {
  ExecResult r = Run(opcode::kNop, {});
  EXPECT_EQ(r.status, SlotStatus::kDone);
  EXPECT_EQ(r.result_count, 0u);
}

TEST_F(InterpreterTest, StoreLoadAtomicAddCompareSwap) {
  EXPECT_EQ(Run(opcode::kStoreU32, {41, 3}).status, SlotStatus::kDone);
  EXPECT_EQ(Scratch(1, 3), 41u);
  EXPECT_EQ(Run(opcode::kLoadU32, {3}).results[0], 41u);
  ExecResult add = Run(opcode::kAtomicAdd, {2, 3});
  EXPECT_EQ(add.results[0], 41u) << "ATOMIC_ADD returns the previous value";
  EXPECT_EQ(Scratch(1, 3), 43u);
  EXPECT_EQ(Run(opcode::kCompareSwap, {3, 99, 5}).results[0], 43u);
  EXPECT_EQ(Scratch(1, 3), 43u) << "a failed compare leaves the word";
  EXPECT_EQ(Run(opcode::kCompareSwap, {3, 43, 5}).results[0], 43u);
  EXPECT_EQ(Scratch(1, 3), 5u);
}

TEST_F(InterpreterTest, TenantsHaveDisjointWindows) {
  Run(opcode::kStoreU32, {9, 0}, /*tenant=*/2);
  EXPECT_EQ(Scratch(2, 0), 9u);
  EXPECT_EQ(Run(opcode::kLoadU32, {0}, /*tenant=*/1).results[0], 0u);
  EXPECT_EQ(control_[control::kDoneCount], 0u) << "no slot can reach control words";
}

TEST_F(InterpreterTest, OutOfBoundsFaultsNameTheIndex) {
  ExpectFault(Run(opcode::kStoreU32, {1, 16}), FaultCode::kOutOfBounds, 16);
  ExpectFault(Run(opcode::kLoadU32, {0xFFFFFFFF}), FaultCode::kOutOfBounds, 0xFFFFFFFF);
  ExpectFault(Run(opcode::kAtomicAdd, {1, 100}), FaultCode::kOutOfBounds, 100);
  ExpectFault(Run(opcode::kCompareSwap, {16, 0, 0}), FaultCode::kOutOfBounds, 16);
  ExpectFault(Run(opcode::kMemcpy, {10, 0, 7}), FaultCode::kOutOfBounds, 10);
  ExpectFault(Run(opcode::kMemcpy, {0, 0xFFFFFFF0, 1}), FaultCode::kOutOfBounds, 0xFFFFFFF0);
  ExpectFault(Run(opcode::kNop, {}, /*tenant=*/4), FaultCode::kBadArgument, 4);
}

TEST_F(InterpreterTest, MemcpyHandlesOverlapBothWays) {
  for (uint32_t i = 0; i < 6; ++i) Scratch(1, i) = i + 1;
  ASSERT_EQ(Run(opcode::kMemcpy, {0, 2, 4}).status, SlotStatus::kDone);  // forward overlap
  EXPECT_EQ(std::vector<uint32_t>({Scratch(1, 2), Scratch(1, 3), Scratch(1, 4), Scratch(1, 5)}),
            std::vector<uint32_t>({1, 2, 3, 4}));
  ASSERT_EQ(Run(opcode::kMemcpy, {2, 0, 4}).status, SlotStatus::kDone);  // backward overlap
  EXPECT_EQ(std::vector<uint32_t>({Scratch(1, 0), Scratch(1, 1), Scratch(1, 2), Scratch(1, 3)}),
            std::vector<uint32_t>({1, 2, 3, 4}));
}

TEST_F(InterpreterTest, DfaStepReadsTransitionTable) {
  // Two states x two symbols at scratch[4..8): state 0 --1--> 1, state 1 --0--> 0.
  Scratch(1, 4) = 0;
  Scratch(1, 5) = 1;
  Scratch(1, 6) = 0;
  Scratch(1, 7) = 1;
  EXPECT_EQ(Run(opcode::kDfaStep, {4, 0, 1, 2}).results[0], 1u);
  EXPECT_EQ(Run(opcode::kDfaStep, {4, 1, 0, 2}).results[0], 0u);
  ExpectFault(Run(opcode::kDfaStep, {4, 0, 2, 2}), FaultCode::kBadArgument, 2);
  ExpectFault(Run(opcode::kDfaStep, {4, 9, 0, 2}), FaultCode::kOutOfBounds, 9);
}

TEST_F(InterpreterTest, BatchFenceBumpsEpochAndReturnsTag) {
  ExecResult r = Run(opcode::kBatchFence, {0, 1234});
  EXPECT_EQ(r.results[0], 1234u);
  EXPECT_EQ(control_[control::kEpoch], 1u);
}

TEST_F(InterpreterTest, PrintfAppendsAndOverflowIsCounted) {
  for (uint32_t i = 0; i < 70; ++i) {
    EXPECT_EQ(Run(opcode::kPrintf, {i, 2, 3}).status, SlotStatus::kDone);
  }
  engine::DebugLogContents contents;
  ASSERT_TRUE(engine::DecodeDebugLog(log_, &contents).ok());
  ASSERT_EQ(contents.records.size(), 64u);
  EXPECT_EQ(contents.records[5], (engine::DebugRecord{5, 2, 3, 7}));
  EXPECT_EQ(contents.overflow, 6u);
}

TEST_F(InterpreterTest, PackedSlotRunsEveryInnerOp) {
  // Six inner ops in 12 words; vyre runs at most four.
  const std::vector<InnerOp> ops = {{opcode::kAtomicAdd, {10, 0}},
                                    {opcode::kAtomicAdd, {10, 0}},
                                    {opcode::kNop, {}},
                                    {opcode::kNop, {}},
                                    {opcode::kNop, {}},
                                    {opcode::kLoadU32, {0}}};
  auto args = engine::EncodePackedSlot(ops);
  ASSERT_TRUE(args.ok());
  ExecResult r = Run(opcode::kPackedSlot, std::vector<uint32_t>(args->begin(), args->end()));
  ASSERT_EQ(r.status, SlotStatus::kDone);
  EXPECT_EQ(Scratch(1, 0), 20u);
  EXPECT_EQ(r.results[1], 10u) << "result i is inner op i's result0";
  EXPECT_EQ(r.results[5], 20u) << "the sixth inner op ran";
}

TEST_F(InterpreterTest, PackedSlotFaultNamesInnerOp) {
  auto args = engine::EncodePackedSlot(
      std::vector<InnerOp>{{opcode::kNop, {}}, {opcode::kStoreU32, {1, 99}}});
  ExpectFault(Run(opcode::kPackedSlot, std::vector<uint32_t>(args->begin(), args->end())),
              FaultCode::kOutOfBounds, 1);
}

TEST_F(InterpreterTest, CustomOpcodeDispatchAndUnknownOpcode) {
  for (uint32_t i = 0; i < 4; ++i) Scratch(1, i) = 0x80000000u;
  ExecResult sum = Run(ScratchSumOp::kOpcode, {0, 4});
  EXPECT_EQ(sum.results[0], 0u);
  EXPECT_EQ(sum.results[1], 2u) << "64-bit sum high word";
  ExpectFault(Run(ScratchSumOp::kOpcode, {10, 7}), FaultCode::kOutOfBounds, 10);
  ExpectFault(Run(12345, {}), FaultCode::kUnknownOpcode, 12345);
  ExpectFault(Run(opcode::kLoadMiss, {3, 0}), FaultCode::kResourceNotFound, 3);
}

struct TestOp {
  static constexpr uint32_t kOpcode = 0x10001;
  static constexpr const char* kName = "TEST";
  static constexpr uint32_t kArgCount = 1;
  static ExecResult Run(const uint32_t* args, const Scratch&, ExecContext&) {
    ExecResult r = Done(1);
    r.results[0] = args[0] * 3;
    return r;
  }
};

struct BuiltinNumberOp {
  static constexpr uint32_t kOpcode = 3;
};

TEST(OpcodeRegistryTest, CompileTimeRegistration) {
  using Registry = OpcodeRegistry<ScratchSumOp, TestOp>;
  static_assert(Registry::kCount == 2);
  EXPECT_TRUE(Registry::Has(0x10001));
  EXPECT_FALSE(Registry::Has(9));
  EXPECT_EQ(Registry::ArgCount(0x10001), 1u);
  ExecContext ctx;
  const uint32_t args[12] = {14};
  EXPECT_EQ(Registry::Run(0x10001, args, Scratch{nullptr, 0}, ctx).results[0], 42u);
  static_assert(!OpcodeRegistry<BuiltinNumberOp>::Valid(), "built-in numbers cannot be registered");
  static_assert(!OpcodeRegistry<TestOp, TestOp>::Valid(), "duplicates are rejected");
}

}  // namespace
}  // namespace mk::protocol
