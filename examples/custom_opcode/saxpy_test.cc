// SAXPY, the worked example of an opcode added outside the engine (README.md here): against a
// C++ reference on fresh random vectors, through every engine the suite runs it on (the CPU
// engine, cuda-emulated, and the CUDA engine on a GPU), with its faults.
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mk/engine/engine.h"
#include "mk/engine/opcode_registry.h"
#include "saxpy_op.h"
#include "support/engine_test_util.h"

namespace mk::examples {
namespace {

using engine::CompletionStatus;
using engine::testing::RunOne;
using engine::testing::Slot;

class SaxpyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MK_REQUIRE_BACKEND(engine::testing::BackendUnderTest());
    e_ = engine::testing::MakeStarted(engine::testing::SmallRingSuiteOptions());
    ASSERT_NE(e_, nullptr);
  }
  uint32_t Upload(const std::vector<float>& values) {
    auto b = e_->CreateBuffer(1, values.size() * 4 + 4);
    EXPECT_TRUE(b.ok()) << b.status();
    std::string bytes(values.size() * 4, '\0');
    std::memcpy(bytes.data(), values.data(), bytes.size());
    EXPECT_TRUE(e_->WriteBuffer(1, b->handle, 4, bytes).ok());  // at offset 4
    return b->handle;
  }
  std::unique_ptr<engine::Engine> e_;
  std::mt19937 rng_{std::random_device{}()};
};

TEST_F(SaxpyTest, IsRegisteredWithoutEditingTheEngine) {
  EXPECT_TRUE(protocol::ProductOpcodes::Has(SaxpyOp::kOpcode));
  EXPECT_EQ(protocol::ProductOpcodes::ArgCount(SaxpyOp::kOpcode), 8u);
}

TEST_F(SaxpyTest, MatchesTheReference) {
  const uint32_t n = std::uniform_int_distribution<uint32_t>(0, 5000)(rng_);
  std::uniform_real_distribution<float> value(-10.0f, 10.0f);
  std::vector<float> x(n), y(n);
  for (float& v : x) v = value(rng_);
  for (float& v : y) v = value(rng_);
  const float a = value(rng_);
  uint32_t a_bits;
  std::memcpy(&a_bits, &a, 4);
  const uint32_t hx = Upload(x), hy = Upload(y);
  const engine::Completion c = RunOne(*e_, Slot(SaxpyOp::kOpcode, {hx, 4, 0, hy, 4, 0, n, a_bits}));
  ASSERT_EQ(c.status, CompletionStatus::kDone);
  EXPECT_EQ(c.results[0], n);
  std::string out(n * 4, '\0');
  ASSERT_TRUE(e_->ReadBuffer(1, hy, 4, absl::MakeSpan(out)).ok());
  for (uint32_t i = 0; i < n; ++i) {
    float got;
    std::memcpy(&got, out.data() + i * 4, 4);
    ASSERT_EQ(got, a * x[i] + y[i]) << "element " << i;  // one rounding, as the reference
  }
}

TEST_F(SaxpyTest, FaultsNameTheHandleOrTheArgument) {
  const uint32_t hx = Upload({1, 2, 3}), hy = Upload({4, 5, 6});
  engine::Completion c = RunOne(*e_, Slot(SaxpyOp::kOpcode, {hx, 4, 0, hy, 4, 0, 4, 0}));
  ASSERT_EQ(c.status, CompletionStatus::kFault);
  EXPECT_EQ(c.fault_code, static_cast<uint32_t>(protocol::FaultCode::kOutOfBounds));
  EXPECT_EQ(c.fault_detail, hx);
  c = RunOne(*e_, Slot(SaxpyOp::kOpcode, {hx, 4, 0, hy, 4, 0, 3, 0}), /*tenant=*/2);
  EXPECT_EQ(c.fault_code, static_cast<uint32_t>(protocol::FaultCode::kResourceNotFound))
      << "another tenant's buffers do not exist for it";
  c = RunOne(*e_, Slot(SaxpyOp::kOpcode, {hx, 2, 0, hy, 4, 0, 1, 0}));
  EXPECT_EQ(c.fault_code, static_cast<uint32_t>(protocol::FaultCode::kBadArgument));
  EXPECT_EQ(c.fault_detail, 1u);
}

}  // namespace
}  // namespace mk::examples
