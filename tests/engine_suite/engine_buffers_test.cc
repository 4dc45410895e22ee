// Tenant buffers on every backend: create, write, read back, list, free; quotas; and the
// isolation rule (a handle is usable only by the tenant that created it). The bytes are random
// and fresh each run; sizes are not multiples of anything.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/engine/engine.h"
#include "support/engine_test_util.h"

namespace mk::engine {
namespace {

using ::testing::HasSubstr;

class EngineBuffersTest : public ::testing::Test {
 protected:
  void SetUp() override { MK_REQUIRE_BACKEND(testing::BackendUnderTest()); }
  static std::unique_ptr<Engine> Make(const EngineOptions& o = testing::SmallRingSuiteOptions()) {
    auto e = CreateEngine(o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }
  std::string RandomBytes(size_t n) {
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>(rng_());
    return out;
  }
  std::mt19937 rng_{std::random_device{}()};
};

TEST_F(EngineBuffersTest, WrittenBytesReadBackAndNewBuffersAreZero) {
  auto e = Make();
  auto buffer = e->CreateBuffer(1, 100003);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  EXPECT_EQ(buffer->bytes, 100003u);
  EXPECT_TRUE(protocol::buffer::IsBufferHandle(buffer->handle));
  std::string zeros(100003, 'x');
  ASSERT_TRUE(e->ReadBuffer(1, buffer->handle, 0, absl::MakeSpan(zeros)).ok());
  EXPECT_EQ(zeros, std::string(100003, '\0')) << "a new buffer holds no earlier bytes";

  const std::string data = RandomBytes(100003);
  // In uneven pieces, the last one ending on the buffer's last byte.
  for (size_t at = 0; at < data.size();) {
    const size_t n = std::min<size_t>(data.size() - at, 1 + rng_() % 9000);
    ASSERT_TRUE(
        e->WriteBuffer(1, buffer->handle, at, absl::MakeConstSpan(data.data() + at, n)).ok());
    at += n;
  }
  std::string back(data.size(), '\0');
  ASSERT_TRUE(e->ReadBuffer(1, buffer->handle, 0, absl::MakeSpan(back)).ok());
  EXPECT_EQ(back, data);
  std::string last(1, '\0');
  ASSERT_TRUE(e->ReadBuffer(1, buffer->handle, data.size() - 1, absl::MakeSpan(last)).ok());
  EXPECT_EQ(last[0], data.back());
  std::string none;
  EXPECT_TRUE(e->ReadBuffer(1, buffer->handle, data.size(), absl::MakeSpan(none)).ok())
      << "an empty range at the end";
}

TEST_F(EngineBuffersTest, RangesPastTheEndAreOutOfRange) {
  auto e = Make();
  auto buffer = e->CreateBuffer(1, 10);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  std::string two(2, 'a');
  const absl::Status write = e->WriteBuffer(1, buffer->handle, 9, two);
  EXPECT_EQ(write.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(write.message(), HasSubstr("write of 2 bytes at offset 9 runs past the end"));
  const absl::Status read = e->ReadBuffer(1, buffer->handle, UINT64_MAX, absl::MakeSpan(two));
  EXPECT_EQ(read.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(e->CreateBuffer(1, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

// The isolation rule: another tenant's read, write or free of a handle is NOT_FOUND, with the
// same message as a handle that never existed; a freed handle is dead, also after its entry is
// reused.
TEST_F(EngineBuffersTest, AHandleIsOnlyItsTenants) {
  auto e = Make();
  auto mine = e->CreateBuffer(1, 64);
  ASSERT_TRUE(mine.ok()) << mine.status();
  ASSERT_TRUE(e->WriteBuffer(1, mine->handle, 0, RandomBytes(64)).ok());
  std::string out(64, '\0');
  const absl::Status foreign = e->ReadBuffer(2, mine->handle, 0, absl::MakeSpan(out));
  EXPECT_EQ(foreign.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(foreign.message(), HasSubstr("is not a buffer of tenant 2"));
  EXPECT_EQ(e->WriteBuffer(2, mine->handle, 0, out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e->FreeBuffer(2, mine->handle).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(e->ListBuffers(2)->empty());
  const absl::Status never = e->ReadBuffer(2, mine->handle ^ 0x5, 0, absl::MakeSpan(out));
  EXPECT_EQ(never.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(never.message()).substr(0, 20),
            std::string(foreign.message()).substr(0, 20));
  EXPECT_EQ(e->ReadBuffer(1, 7, 0, absl::MakeSpan(out)).code(),
            absl::StatusCode::kFailedPrecondition)
      << "a resource id reads a resource, and this engine has no resource root";
  EXPECT_EQ(e->WriteBuffer(1, 7, 0, out).code(), absl::StatusCode::kNotFound)
      << "a resource id is no buffer to write";

  ASSERT_TRUE(e->FreeBuffer(1, mine->handle).ok());
  EXPECT_EQ(e->ReadBuffer(1, mine->handle, 0, absl::MakeSpan(out)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(e->FreeBuffer(1, mine->handle).code(), absl::StatusCode::kNotFound) << "freed twice";
  auto next = e->CreateBuffer(2, 64);  // may reuse the entry
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_NE(next->handle, mine->handle);
  EXPECT_EQ(e->ReadBuffer(1, next->handle, 0, absl::MakeSpan(out)).code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(e->ReadBuffer(2, next->handle, 0, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, std::string(64, '\0')) << "tenant 1's freed bytes do not reach tenant 2";
}

TEST_F(EngineBuffersTest, QuotasAreBytesAndBuffersPerTenant) {
  EngineOptions o = testing::SmallRingSuiteOptions();
  o.tenant_buffer_bytes = 1000;
  o.max_buffers_per_tenant = 3;
  auto e = Make(o);
  auto a = e->CreateBuffer(1, 600);
  ASSERT_TRUE(a.ok()) << a.status();
  auto over = e->CreateBuffer(1, 401);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.status().message(),
              HasSubstr("tenant 1 holds 600 bytes in 1 buffers and may hold 1000"));
  EXPECT_TRUE(e->CreateBuffer(2, 1000).ok()) << "another tenant's quota is its own";
  ASSERT_TRUE(e->CreateBuffer(1, 100).ok());
  ASSERT_TRUE(e->CreateBuffer(1, 100).ok());
  auto fourth = e->CreateBuffer(1, 1);
  EXPECT_EQ(fourth.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(fourth.status().message(), HasSubstr("holds 3 buffers"));
  ASSERT_TRUE(e->FreeBuffer(1, a->handle).ok());
  EXPECT_TRUE(e->CreateBuffer(1, 800).ok()) << "a free gives the bytes back";
  auto listed = e->ListBuffers(1);
  ASSERT_TRUE(listed.ok());
  uint64_t total = 0;
  for (const BufferInfo& b : *listed) total += b.bytes;
  EXPECT_EQ(listed->size(), 3u);
  EXPECT_EQ(total, 1000u);
}

// A freed buffer is retired until every slot published before the free has left the ring:
// meanwhile it counts against its tenant (bytes and buffers), so freeing and creating in a
// loop while a slot holds the ring's tail cannot take more than the quota.
TEST_F(EngineBuffersTest, FreedBuffersCountUntilTheSlotsBeforeTheFreeAreDone) {
  EngineOptions o = testing::SmallRingSuiteOptions();
  o.max_buffers_per_tenant = 2;
  testing::RecordingSink sink;  // before the engine: it outlives the engine's deliveries
  auto e = Make(o);
  auto a = e->CreateBuffer(1, 10);
  ASSERT_TRUE(a.ok()) << a.status();
  // Not started: this slot stays in the ring, as a long-running one would.
  const SlotPayload nop = testing::Slot(protocol::opcode::kNop);
  ASSERT_TRUE(e->Publish(1, {&nop, 1}, {&sink}).ok());
  ASSERT_TRUE(e->FreeBuffer(1, a->handle).ok());
  ASSERT_TRUE(e->CreateBuffer(1, 10).ok());
  auto third = e->CreateBuffer(1, 10);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("holds 2 buffers"));
  EXPECT_EQ(e->ListBuffers(1)->size(), 1u) << "the freed one is gone for the tenant";
  ASSERT_TRUE(e->Start().ok());
  ASSERT_TRUE(sink.WaitForCount(1));
  ASSERT_TRUE(testing::WaitUntil([&] { return e->CreateBuffer(1, 10).ok(); }))
      << "released once the slot left the ring";
}

TEST_F(EngineBuffersTest, TheEngineWideBudgetBoundsAllTenantsTogether) {
  EngineOptions o = testing::SmallRingSuiteOptions();
  o.buffer_budget_bytes = 1000;
  auto e = Make(o);
  ASSERT_TRUE(e->CreateBuffer(1, 600).ok());
  auto over = e->CreateBuffer(2, 500);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.status().message(), HasSubstr("hold 600 of 1000 bytes (--buffer_budget_bytes)"));
  EXPECT_TRUE(e->CreateBuffer(2, 400).ok());
}

TEST_F(EngineBuffersTest, TenantsOutOfRangeAreInvalid) {
  auto e = Make();
  std::string out(1, '\0');
  EXPECT_EQ(e->ReadBuffer(0xFFFFFFFE, 0x80100000, 0, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->FreeBuffer(0xFFFFFFFE, 0x80100000).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->CreateBuffer(64, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mk::engine
