// Tenant buffers end to end over gRPC (docs/buffers.md): two tenants create, write, read back,
// list and free buffers through the C++ client; a tenant cannot touch the other's handles; the
// chunked streams carry large buffers in uneven chunks; bad input gets a precise status.
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/engine_test_util.h"
#include "support/temp_files.h"
#include "support/test_server.h"

namespace mk {
namespace {

using ::testing::HasSubstr;
using testing::TestServer;

constexpr char kTenants[] =
    "tenant 1 token-of-tenant-one\n"
    "tenant 2 token-of-tenant-two\n"
    "admin token-of-the-admin\n";

class ServerBuffersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions so;
    so.tenants_file = files_.WriteFile("tenants.txt", kTenants);
    ts_ = TestServer::Start(so);
    ASSERT_NE(ts_, nullptr);
    one_ = ts_->Client("token-of-tenant-one");
    two_ = ts_->Client("token-of-tenant-two");
  }
  std::string RandomBytes(size_t n) {
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>(rng_());
    return out;
  }
  const testing::ScopedTempDir files_{"mk_buffers"};
  std::unique_ptr<TestServer> ts_;
  std::unique_ptr<client::Client> one_, two_;
  std::mt19937 rng_{std::random_device{}()};
};

TEST_F(ServerBuffersTest, WriteReadListFreeInUnevenChunks) {
  const size_t size = (5u << 20) + 12345;  // several chunks, the last one short
  auto buffer = one_->CreateBuffer(size);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  EXPECT_EQ(buffer->bytes(), size);
  const std::string data = RandomBytes(size);
  uint64_t progress_calls = 0, last_done = 0;
  auto written =
      one_->WriteBuffer(buffer->handle(), 0, data, 777777, [&](uint64_t done, uint64_t total) {
        ++progress_calls;
        last_done = done;
        EXPECT_EQ(total, size);
      });
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, size);
  EXPECT_EQ(last_done, size);
  EXPECT_EQ(progress_calls, (size + 777776) / 777777);
  auto back = one_->ReadBuffer(buffer->handle(), 0, size, 333333);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == data) << "the bytes came back unchanged";
  auto tail = one_->ReadBuffer(buffer->handle(), size - 7, 7);
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_EQ(*tail, data.substr(size - 7));
  auto listed = one_->ListBuffers();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].handle(), buffer->handle());
  ASSERT_TRUE(one_->FreeBuffer(buffer->handle()).ok());
  EXPECT_TRUE(one_->ListBuffers()->empty());
  EXPECT_EQ(one_->ReadBuffer(buffer->handle(), 0, 1).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServerBuffersTest, AnotherTenantsHandleIsNotFound) {
  auto buffer = one_->CreateBuffer(4096);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  ASSERT_TRUE(one_->WriteBuffer(buffer->handle(), 0, RandomBytes(4096)).ok());
  auto read = two_->ReadBuffer(buffer->handle(), 0, 4096);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(read.status().message(), HasSubstr("is not a buffer of tenant 2"));
  auto write = two_->WriteBuffer(buffer->handle(), 0, "x");
  EXPECT_EQ(write.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(write.status().message(), HasSubstr("chunk 0"));
  EXPECT_EQ(two_->FreeBuffer(buffer->handle()).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(two_->ListBuffers()->empty());
  EXPECT_TRUE(one_->ReadBuffer(buffer->handle(), 0, 4096).ok()) << "still tenant 1's";
  // The admin credential names no tenant: buffers are a tenant's.
  auto admin = ts_->Client("token-of-the-admin");
  EXPECT_EQ(admin->CreateBuffer(10).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ts_->Client()->CreateBuffer(10).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(ServerBuffersTest, BadRangesGetPreciseErrors) {
  auto buffer = one_->CreateBuffer(100);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  auto past = one_->ReadBuffer(buffer->handle(), 90, 11);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(past.status().message(), HasSubstr("a read of 11 bytes at offset 90 runs past"));
  auto overflow = one_->ReadBuffer(buffer->handle(), UINT64_MAX, 2);
  EXPECT_EQ(overflow.status().code(), absl::StatusCode::kOutOfRange);
  // A stream whose third chunk runs past the end: the first two are written, the error says so.
  const std::string data = RandomBytes(120);
  auto written = one_->WriteBuffer(buffer->handle(), 0, data, 40);
  EXPECT_EQ(written.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(written.status().message(), HasSubstr("chunk 2 (80 bytes written before it)"));
  auto front = one_->ReadBuffer(buffer->handle(), 0, 80);
  ASSERT_TRUE(front.ok()) << front.status();
  EXPECT_EQ(*front, data.substr(0, 80));
  EXPECT_EQ(one_->CreateBuffer(0).status().code(), absl::StatusCode::kInvalidArgument);
  auto empty = one_->ReadBuffer(buffer->handle(), 100, 0);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
}

// A tenant has at most --max_streams_per_tenant buffer transfers open (each may hold a
// message): one more is RESOURCE_EXHAUSTED, and closing one makes room.
TEST(ServerBufferTransfersTest, OpenTransfersAreCappedPerTenant) {
  const testing::ScopedTempDir files{"mk_buffers_cap"};
  server::ServerOptions so;
  so.tenants_file = files.WriteFile("tenants.txt", kTenants);
  so.max_streams_per_tenant = 1;
  auto ts = TestServer::Start(so);
  ASSERT_NE(ts, nullptr);
  auto one = ts->Client("token-of-tenant-one");
  auto buffer = one->CreateBuffer(10);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  auto context = one->NewContext(absl::Seconds(30));
  v1::WriteBufferResponse response;
  auto open = one->megakernel()->WriteBuffer(context.get(), &response);
  v1::WriteBufferChunk chunk;
  chunk.set_handle(buffer->handle());
  chunk.set_data("abc");
  ASSERT_TRUE(open->Write(chunk));
  // Once the server has the open transfer (its chunk written), a second one is refused.
  absl::Status second;
  ASSERT_TRUE(engine::testing::WaitUntil([&] {
    second = one->ReadBuffer(buffer->handle(), 0, 10).status();
    return second.code() == absl::StatusCode::kResourceExhausted;
  })) << second;
  EXPECT_THAT(second.message(), HasSubstr("buffer transfers"));
  EXPECT_TRUE(ts->Client("token-of-tenant-two")->ListBuffers().ok()) << "others unaffected";
  open->WritesDone();
  ASSERT_TRUE(open->Finish().ok());
  EXPECT_EQ(response.bytes_written(), 3u);
  auto again = one->ReadBuffer(buffer->handle(), 0, 3);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, "abc");
}

}  // namespace
}  // namespace mk
