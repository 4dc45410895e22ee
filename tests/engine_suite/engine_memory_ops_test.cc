// The memory opcodes (COPY, FILL, DFA_SCAN, GEMV, EMBEDDING_GATHER, DFA_STEP's buffer form)
// against plain C++ references written here, on random inputs generated fresh each run: sizes
// that are no multiple of anything, empty ranges, the last byte of a buffer. Then their faults:
// another tenant's handle, a freed handle, ranges past the end, bad indices, and the sizes the
// host refuses at publish. The seed is printed, so a failure can be replayed (MK_TEST_SEED).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/engine/engine.h"
#include "mk/engine/memory_opcodes.h"
#include "support/engine_test_util.h"

namespace mk::engine {
namespace {

using ::testing::HasSubstr;
using testing::RunOne;
using testing::Slot;
namespace op = protocol::opcode;
using protocol::FaultCode;

uint32_t Lo(uint64_t v) { return static_cast<uint32_t>(v); }
uint32_t Hi(uint64_t v) { return static_cast<uint32_t>(v >> 32); }

class EngineMemoryOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MK_REQUIRE_BACKEND(testing::BackendUnderTest());
    const char* seed = std::getenv("MK_TEST_SEED");
    seed_ = seed != nullptr ? static_cast<uint32_t>(std::strtoul(seed, nullptr, 10))
                            : std::random_device{}();
    rng_.seed(seed_);
    RecordProperty("seed", static_cast<int>(seed_));
    std::printf("MK_TEST_SEED=%u\n", seed_);
    e_ = testing::MakeStarted(testing::SmallRingSuiteOptions());
    ASSERT_NE(e_, nullptr);
  }
  uint32_t Uniform(uint32_t lo, uint32_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<uint32_t>(lo, hi)(rng_);
  }
  std::string RandomBytes(size_t n) {
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>(rng_());
    return out;
  }
  // A buffer of tenant `tenant` holding `bytes`.
  uint32_t Buffer(const std::string& bytes, uint32_t tenant = 1) {
    auto b = e_->CreateBuffer(tenant, bytes.size());
    EXPECT_TRUE(b.ok()) << b.status();
    if (!b.ok()) return 0;
    EXPECT_TRUE(e_->WriteBuffer(tenant, b->handle, 0, bytes).ok());
    return b->handle;
  }
  std::string Contents(uint32_t handle, size_t bytes, uint32_t tenant = 1) {
    std::string out(bytes, '\0');
    EXPECT_TRUE(e_->ReadBuffer(tenant, handle, 0, absl::MakeSpan(out)).ok());
    return out;
  }
  static void ExpectFault(const Completion& c, FaultCode code, uint32_t detail) {
    ASSERT_EQ(c.status, CompletionStatus::kFault);
    EXPECT_EQ(c.fault_code, static_cast<uint32_t>(code));
    EXPECT_EQ(c.fault_detail, detail);
  }
  uint32_t seed_ = 0;
  std::mt19937 rng_;
  // Before the engine: destroyed after it, so no worker is still inside OnCompletions.
  testing::RecordingSink sink_;
  std::unique_ptr<Engine> e_;
};

TEST_F(EngineMemoryOpsTest, CopyMatchesMemmoveIncludingOverlapAndEdges) {
  const size_t size = Uniform(1, 200000);
  std::string a = RandomBytes(size), b = RandomBytes(Uniform(1, 200000));
  const uint32_t ha = Buffer(a), hb = Buffer(b);
  for (int round = 0; round < 40; ++round) {
    const bool same = round % 3 == 0;  // within one buffer: overlapping ranges
    std::string& dst = same ? a : b;
    const uint32_t hdst = same ? ha : hb;
    uint64_t length = Uniform(0, static_cast<uint32_t>(std::min(a.size(), dst.size())));
    if (round == 1) length = 0;
    const uint64_t src_off = Uniform(0, static_cast<uint32_t>(a.size() - length));
    const uint64_t dst_off = round == 2 ? dst.size() - length  // ending on the last byte
                                        : Uniform(0, static_cast<uint32_t>(dst.size() - length));
    const Completion c =
        RunOne(*e_, Slot(op::kCopy, {ha, Lo(src_off), Hi(src_off), hdst, Lo(dst_off), Hi(dst_off),
                                     Lo(length), Hi(length)}));
    ASSERT_EQ(c.status, CompletionStatus::kDone) << "round " << round;
    EXPECT_EQ(c.results[0], length);
    std::memmove(dst.data() + dst_off, a.data() + src_off, length);
    ASSERT_EQ(Contents(hdst, dst.size()), dst) << "round " << round;
  }
}

TEST_F(EngineMemoryOpsTest, FillWritesThePatternBytewise) {
  std::string data = RandomBytes(Uniform(1, 50000));
  const uint32_t h = Buffer(data);
  for (uint32_t width : {0u, 1u, 2u, 4u, 4u, 2u}) {
    const uint64_t length = Uniform(0, static_cast<uint32_t>(data.size()));
    const uint64_t offset = Uniform(0, static_cast<uint32_t>(data.size() - length));
    const uint32_t pattern = static_cast<uint32_t>(rng_());
    const Completion c = RunOne(
        *e_, Slot(op::kFill, {h, Lo(offset), Hi(offset), Lo(length), Hi(length), pattern, width}));
    ASSERT_EQ(c.status, CompletionStatus::kDone);
    const uint32_t w = width == 0 ? 1 : width;
    for (uint64_t i = 0; i < length; ++i) {
      data[offset + i] = static_cast<char>(pattern >> (8 * (i % w)));
    }
    ASSERT_EQ(Contents(h, data.size()), data) << "width " << width;
  }
}

// A random DFA in the shared table format, and the sequential scan it must equal.
struct Dfa {
  uint32_t states = 0;
  std::vector<uint32_t> next;    // states x 256
  std::vector<uint32_t> accept;  // bitmap
  std::string Table() const {
    std::string out((next.size() + accept.size()) * 4, '\0');
    std::memcpy(out.data(), next.data(), next.size() * 4);
    std::memcpy(out.data() + next.size() * 4, accept.data(), accept.size() * 4);
    return out;
  }
  bool Accepts(uint32_t s) const { return (accept[s / 32] >> (s % 32)) & 1u; }
};

TEST_F(EngineMemoryOpsTest, DfaScanEqualsTheSequentialScan) {
  for (int round = 0; round < 12; ++round) {
    Dfa dfa;
    dfa.states = Uniform(1, 70);
    dfa.next.resize(size_t{dfa.states} * 256);
    for (uint32_t& n : dfa.next) n = Uniform(0, dfa.states - 1);
    dfa.accept.assign((dfa.states + 31) / 32, 0);
    for (uint32_t s = 0; s < dfa.states; ++s) {
      if (Uniform(0, 3) == 0) dfa.accept[s / 32] |= 1u << (s % 32);
    }
    // The table after a few bytes of padding (its offset is a multiple of 4).
    const uint64_t table_off = uint64_t{4} * Uniform(0, 5);
    const uint32_t table = Buffer(RandomBytes(table_off) + dfa.Table());
    const std::string input = RandomBytes(round == 0 ? 0 : Uniform(1, 100000));
    const uint32_t in = Buffer(input + "tail");
    const uint64_t off = input.empty() ? 0 : Uniform(0, static_cast<uint32_t>(input.size() - 1));
    const uint64_t length = input.size() - off;
    const uint32_t start = Uniform(0, dfa.states - 1);
    uint32_t state = start;
    uint64_t accepted = 0, first = ~0ull;
    for (uint64_t i = 0; i < length; ++i) {
      state = dfa.next[state * 256 + static_cast<uint8_t>(input[off + i])];
      if (dfa.Accepts(state)) {
        if (accepted++ == 0) first = i;
      }
    }
    const Completion c =
        RunOne(*e_, Slot(op::kDfaScan, {table, Lo(table_off), Hi(table_off), dfa.states, in,
                                        Lo(off), Hi(off), Lo(length), Hi(length), start}));
    ASSERT_EQ(c.status, CompletionStatus::kDone) << "round " << round;
    EXPECT_EQ(c.results[0], state);
    EXPECT_EQ(c.results[1] | (uint64_t{c.results[2]} << 32), accepted);
    EXPECT_EQ(c.results[3] | (uint64_t{c.results[4]} << 32), first);
    // DFA_STEP reads the same table format from the buffer.
    const uint32_t symbol = Uniform(0, 255);
    const Completion step = RunOne(
        *e_, Slot(op::kDfaStep, {table, start, symbol, dfa.states, Lo(table_off), Hi(table_off)}));
    ASSERT_EQ(step.status, CompletionStatus::kDone);
    EXPECT_EQ(step.results[0], dfa.next[start * 256 + symbol]);
  }
}

TEST_F(EngineMemoryOpsTest, DfaTransitionsOutsideTheTableFault) {
  Dfa dfa;
  dfa.states = 2;
  dfa.next.assign(size_t{2} * 256, 1);
  dfa.next[1 * 256 + 'x'] = 7;  // state 7 does not exist
  dfa.accept = {0};
  const uint32_t table = Buffer(dfa.Table());
  const uint32_t in = Buffer("abxc");
  ExpectFault(RunOne(*e_, Slot(op::kDfaScan, {table, 0, 0, 2, in, 0, 0, 4, 0, 0})),
              FaultCode::kBadArgument, 3);
  ExpectFault(RunOne(*e_, Slot(op::kDfaStep, {table, 0, 256, 2})), FaultCode::kBadArgument, 2);
  // DFA_STEP checks the transition it takes, as DFA_SCAN does.
  ExpectFault(RunOne(*e_, Slot(op::kDfaStep, {table, 1, 'x', 2})), FaultCode::kBadArgument, 3);
  // A misaligned table offset names the offset word.
  ExpectFault(RunOne(*e_, Slot(op::kDfaScan, {table, 2, 0, 1, in, 0, 0, 1, 0, 0})),
              FaultCode::kBadArgument, 1);
  // A table of 3 states does not fit the buffer.
  ExpectFault(RunOne(*e_, Slot(op::kDfaStep, {table, 0, 1, 3})), FaultCode::kOutOfBounds, table);
}

uint16_t ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<uint16_t>(bits >> 16);  // truncation: the reference widens it back
}
float FromBf16(uint16_t b) {
  const uint32_t bits = uint32_t{b} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

TEST_F(EngineMemoryOpsTest, GemvMatchesADoubleReferenceInRowBlocks) {
  for (uint32_t dtype : {protocol::memory::kDtypeF32, protocol::memory::kDtypeBf16}) {
    const uint32_t rows = Uniform(1, 300), cols = Uniform(1, 700);
    const uint32_t element = dtype == 0 ? 4 : 2;
    std::vector<float> w(uint64_t{rows} * cols), x(cols);
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    for (float& v : w) v = value(rng_);
    for (float& v : x) v = value(rng_);
    std::string w_bytes(w.size() * element, '\0');
    for (size_t i = 0; i < w.size(); ++i) {
      if (dtype == 0) {
        std::memcpy(w_bytes.data() + i * 4, &w[i], 4);
      } else {
        const uint16_t b = ToBf16(w[i]);
        std::memcpy(w_bytes.data() + i * 2, &b, 2);
        w[i] = FromBf16(b);
      }
    }
    std::string x_bytes(size_t{cols} * 4, '\0');
    std::memcpy(x_bytes.data(), x.data(), size_t{cols} * 4);
    const uint32_t hw = Buffer(w_bytes), hx = Buffer(x_bytes);
    const uint32_t hy = Buffer(std::string(size_t{rows} * 4, '\0'));
    // Rows in blocks, as a client splits a large matrix.
    const uint32_t block = Uniform(1, rows);
    for (uint32_t r0 = 0; r0 < rows; r0 += block) {
      const uint32_t n = std::min(block, rows - r0);
      const uint64_t w_off = uint64_t{r0} * cols * element, y_off = uint64_t{r0} * 4;
      const Completion c = RunOne(*e_, Slot(op::kGemv, {hw, Lo(w_off), Hi(w_off), n, cols, dtype,
                                                        hx, 0, 0, hy, Lo(y_off), Hi(y_off)}));
      ASSERT_EQ(c.status, CompletionStatus::kDone) << "rows " << r0;
      EXPECT_EQ(c.results[0], n);
    }
    const std::string y_bytes = Contents(hy, size_t{rows} * 4);
    for (uint32_t r = 0; r < rows; ++r) {
      double want = 0, magnitude = 0;
      for (uint32_t c = 0; c < cols; ++c) {
        want += double{w[uint64_t{r} * cols + c]} * x[c];
        magnitude += std::abs(double{w[uint64_t{r} * cols + c]} * x[c]);
      }
      float got;
      std::memcpy(&got, y_bytes.data() + size_t{r} * 4, 4);
      ASSERT_NEAR(got, want, 1e-5 * magnitude + 1e-6) << "dtype " << dtype << " row " << r;
    }
  }
}

TEST_F(EngineMemoryOpsTest, EmbeddingGatherCopiesTheIndexedRows) {
  const uint32_t row_bytes = Uniform(1, 300), rows = Uniform(1, 500), count = Uniform(0, 400);
  const std::string table = RandomBytes(uint64_t{row_bytes} * rows);
  std::vector<uint32_t> index(count);
  for (uint32_t& i : index) i = Uniform(0, rows - 1);
  std::string index_bytes(size_t{count} * 4 + 4, '\0');  // at offset 4
  std::memcpy(index_bytes.data() + 4, index.data(), size_t{count} * 4);
  const uint32_t ht = Buffer(table), hi = Buffer(index_bytes);
  const uint32_t ho = Buffer(std::string(uint64_t{count} * row_bytes + 1, '\0'));
  const Completion c = RunOne(
      *e_, Slot(op::kEmbeddingGather, {ht, 0, 0, row_bytes, rows, hi, 4, 0, count, ho, 1, 0}));
  ASSERT_EQ(c.status, CompletionStatus::kDone);
  EXPECT_EQ(c.results[0], count);
  std::string want(1, '\0');
  for (uint32_t i : index) want += table.substr(uint64_t{i} * row_bytes, row_bytes);
  EXPECT_EQ(Contents(ho, want.size()), want);
  // An index past the table faults naming its position.
  if (count > 0) {
    const uint32_t bad = Uniform(0, count - 1);
    const uint32_t too_far = rows;
    ASSERT_TRUE(e_->WriteBuffer(1, hi, 4 + uint64_t{bad} * 4,
                                std::string(reinterpret_cast<const char*>(&too_far), 4))
                    .ok());
    ExpectFault(RunOne(*e_, Slot(op::kEmbeddingGather,
                                 {ht, 0, 0, row_bytes, rows, hi, 4, 0, count, ho, 1, 0})),
                FaultCode::kOutOfBounds, bad);
  }
}

// A handle is its tenant's: another tenant's slots fault as if it did not exist, and the
// bytes are untouched; a freed handle faults; ranges past the end fault naming the handle.
TEST_F(EngineMemoryOpsTest, ForeignFreedAndShortBuffersFault) {
  const std::string secret = RandomBytes(64);
  const uint32_t mine = Buffer(secret, 1);
  const uint32_t theirs = Buffer(std::string(64, '\0'), 2);
  ExpectFault(RunOne(*e_, Slot(op::kCopy, {mine, 0, 0, theirs, 0, 0, 64, 0}), 2),
              FaultCode::kResourceNotFound, mine);
  ExpectFault(RunOne(*e_, Slot(op::kFill, {mine, 0, 0, 64, 0, 0, 1}), 2),
              FaultCode::kResourceNotFound, mine);
  EXPECT_EQ(Contents(theirs, 64, 2), std::string(64, '\0')) << "nothing reached tenant 2";
  EXPECT_EQ(Contents(mine, 64, 1), secret) << "nothing of tenant 1 changed";
  ExpectFault(RunOne(*e_, Slot(op::kCopy, {mine, 1, 0, mine, 0, 0, 64, 0})),
              FaultCode::kOutOfBounds, mine);
  ExpectFault(RunOne(*e_, Slot(op::kFill, {mine, 0xFFFFFFFF, 0xFFFFFFFF, 2, 0, 0, 1})),
              FaultCode::kOutOfBounds, mine);
  // A resource id is not a buffer (yet).
  ExpectFault(RunOne(*e_, Slot(op::kCopy, {7, 0, 0, mine, 0, 0, 1, 0})),
              FaultCode::kResourceNotFound, 7);
  ASSERT_TRUE(e_->FreeBuffer(1, mine).ok());
  ExpectFault(RunOne(*e_, Slot(op::kFill, {mine, 0, 0, 1, 0, 0, 1})), FaultCode::kResourceNotFound,
              mine);
}

TEST_F(EngineMemoryOpsTest, OversizedOrMalformedSlotsAreRefusedAtPublish) {
  const auto refused = [&](const SlotPayload& s) { return e_->Publish(1, {&s, 1}, {}).status(); };
  absl::Status s = refused(Slot(op::kCopy, {1, 0, 0, 1, 0, 0, (16u << 20) + 1, 0}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("slot 0: args[6..7] (COPY length) 16777217 bytes exceed"));
  EXPECT_THAT(refused(Slot(op::kFill, {1, 0, 0, 1, 0, 0, 3})).message(),
              HasSubstr("FILL pattern width"));
  EXPECT_THAT(refused(Slot(op::kGemv, {1, 0, 0, 4, 4, 2})).message(), HasSubstr("GEMV dtype"));
  EXPECT_THAT(refused(Slot(op::kGemv, {1, 0, 0, 4096, 4096, 0})).message(),
              HasSubstr("split the work"));
  EXPECT_THAT(refused(Slot(op::kDfaScan, {1, 0, 0, 4, 1, 0, 0, 1, 0, 4})).message(),
              HasSubstr("start state"));
  EXPECT_THAT(refused(Slot(op::kEmbeddingGather, {1, 0, 0, 0})).message(),
              HasSubstr("row bytes) is 0"));
  // Work caps that keep one slot near a millisecond, and products that must not wrap: a GEMV
  // of 2^31 x 2^31 f32 is 2^64 bytes, which wrapped to 0 and passed the W check.
  EXPECT_THAT(refused(Slot(op::kGemv, {1, 0, 0, 0x80000000, 0x80000000, 0})).message(),
              HasSubstr("args[4] (GEMV cols, as f32 x)"));
  EXPECT_THAT(refused(Slot(op::kGemv, {1, 0, 0, 1u << 28, 0, 0})).message(),
              HasSubstr("args[3] (GEMV rows, as f32 y)"));
  EXPECT_THAT(refused(Slot(op::kDfaScan, {1, 0, 0, 4097, 1, 0, 0, 1, 0, 0})).message(),
              HasSubstr("4097 is not 1..4096"));
  EXPECT_THAT(refused(Slot(op::kDfaScan, {1, 0, 0, 4, 1, 0, 0, (256u << 10) + 1, 0, 0})).message(),
              HasSubstr("split the scan"));
  EXPECT_THAT(refused(Slot(op::kEmbeddingGather, {1, 0, 0, 1, 1, 1, 0, 0, 65537})).message(),
              HasSubstr("65537 rows exceed"));
}

// A buffer freed while slots that use it are in flight: they finish (DONE, or faulting once
// the handle is gone) and its memory is released only after them; the quota follows.
TEST_F(EngineMemoryOpsTest, FreeingABufferInUseIsSafe) {
  const uint32_t size = 1u << 20;
  const uint32_t src = Buffer(RandomBytes(size));
  const uint32_t dst = Buffer(std::string(size, '\0'));
  std::vector<SlotPayload> copies(64, Slot(op::kCopy, {src, 0, 0, dst, 0, 0, size, 0}));
  auto published = testing::PublishWithRetry(*e_, 1, copies, &sink_);
  ASSERT_TRUE(published.ok()) << published.status();
  ASSERT_TRUE(e_->FreeBuffer(1, src).ok());
  ASSERT_TRUE(sink_.WaitForCount(64));
  for (const Completion& c : sink_.completions()) {
    if (c.status == CompletionStatus::kFault) {
      EXPECT_EQ(c.fault_code, static_cast<uint32_t>(FaultCode::kResourceNotFound));
      EXPECT_EQ(c.fault_detail, src);
    } else {
      EXPECT_EQ(c.status, CompletionStatus::kDone);
    }
  }
}

}  // namespace
}  // namespace mk::engine
