// Credentials: tenant isolation, the admin role, and TLS / mutual TLS.
#include <cstdlib>

#include "gmock/gmock.h"
#include "grpc_health_v1.grpc.pb.h"
#include "gtest/gtest.h"
#include "support/temp_files.h"
#include "support/test_server.h"

namespace mk {
namespace {

using client::Slot;
using ::testing::HasSubstr;
using testing::TestServer;

constexpr char kTenants[] =
    "# test tenants\n"
    "tenant 1 token-of-tenant-one\n"
    "tenant 2 token-of-tenant-two\n"
    "admin token-of-the-admin\n";

class ServerAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions so;
    so.tenants_file = files_.WriteFile("tenants.txt", kTenants);
    ts_ = TestServer::Start(so);
    ASSERT_NE(ts_, nullptr);
    ASSERT_FALSE(ts_->server->development_mode());
  }
  const testing::ScopedTempDir files_{"mk_auth"};
  std::unique_ptr<TestServer> ts_;
};

TEST_F(ServerAuthTest, MissingOrUnknownTokenIsUnauthenticated) {
  EXPECT_EQ(ts_->Client()->Publish({Slot{}}).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ts_->Client("not-a-real-token")->Publish({Slot{}}).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ts_->Client()->GetTelemetry().status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(ServerAuthTest, TenantsAreIsolated) {
  auto a = ts_->Client("token-of-tenant-one");
  auto b = ts_->Client("token-of-tenant-two");
  // The TENANT word of packed slots is ignored: this STORE runs as tenant 1 whatever it says.
  std::string packed = client::EncodePacked({Slot{1, 2, {1234, 0}}});
  packed[8] = 2;
  auto stored = a->PublishPacked(packed, absl::Seconds(10));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(a->Publish({Slot{3, 2, {0}}}, absl::Seconds(10))->completions[0].results[0], 1234u);
  EXPECT_EQ(b->Publish({Slot{3, 2, {0}}}, absl::Seconds(10))->completions[0].results[0], 0u)
      << "tenant 2 sees its own scratch window";
  // Tenant 2 cannot collect tenant 1's tickets: its ticket space is its own.
  auto pending = a->Publish({Slot{}});
  ASSERT_TRUE(pending.ok());
  auto stolen = b->Poll(std::vector<uint64_t>{pending->first_ticket + 5}, absl::ZeroDuration());
  EXPECT_THAT(stolen.status().message(), HasSubstr("never issued to tenant 2"));
  auto mine = a->Poll(std::vector<uint64_t>{pending->first_ticket}, absl::Seconds(10));
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine->size(), 1u);
}

TEST_F(ServerAuthTest, AdminNeedsTheAdminToken) {
  auto tenant = ts_->Client("token-of-tenant-one");
  EXPECT_EQ(tenant->SetTenantEnabled(2, false).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(tenant->Drain().status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ts_->Client()->Shutdown(true).code(), absl::StatusCode::kUnauthenticated);
  auto admin = ts_->Client("token-of-the-admin");
  ASSERT_TRUE(admin->SetTenantEnabled(2, false).ok());
  auto disabled = ts_->Client("token-of-tenant-two")->Publish({Slot{}});
  EXPECT_EQ(disabled.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(admin->SetTenantEnabled(2, true).ok());
  EXPECT_TRUE(ts_->Client("token-of-tenant-two")->Publish({Slot{}}).ok());
  EXPECT_EQ(admin->Shutdown(true).code(), absl::StatusCode::kFailedPrecondition)
      << "this in-process server has no shutdown handler";
}

// The admin credential administers; it is not a tenant, so data calls with it are refused
// instead of running as tenant 0.
TEST_F(ServerAuthTest, TheAdminTokenNamesNoTenant) {
  auto admin = ts_->Client("token-of-the-admin");
  auto published = admin->Publish({Slot{}});
  EXPECT_EQ(published.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(published.status().message(), HasSubstr("names no tenant"));
  EXPECT_EQ(admin->Poll(std::vector<uint64_t>{1}, absl::ZeroDuration()).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(admin->GetTelemetry().ok()) << "telemetry is not tenant data";
}

// Only health and reflection answer anonymous callers; Echo needs a token like the rest.
TEST_F(ServerAuthTest, EchoNeedsAToken) {
  EXPECT_EQ(ts_->Client()->Echo("hello").status().code(), absl::StatusCode::kUnauthenticated);
  auto echoed = ts_->Client("token-of-tenant-one")->Echo("hello");
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_EQ(*echoed, "hello");
}

// A tenants file written on Windows (CRLF line ends) works: no token silently ends in '\r'.
TEST(TenantsFileTest, CrlfLineEndsAreSeparators) {
  const testing::ScopedTempDir files("mk_auth");
  server::ServerOptions so;
  so.tenants_file =
      files.WriteFile("crlf.txt", "tenant 1 token-of-tenant-one\r\nadmin token-of-the-admin\r\n");
  auto ts = TestServer::Start(so);
  ASSERT_NE(ts, nullptr);
  EXPECT_TRUE(ts->Client("token-of-tenant-one")->Publish({Slot{}}).ok());
  EXPECT_TRUE(ts->Client("token-of-the-admin")->SetTenantEnabled(1, true).ok());
}

// Shared resources (the root's shared/ folder) are registered and evicted with the admin token
// only, and every tenant lists and uses them; a tenant's own registration names its own folder.
TEST(SharedResourcesTest, OnlyTheAdminRegistersSharedFilesAndEveryTenantUsesThem) {
  const testing::ScopedTempDir files("mk_auth");
  files.WriteFile("root/shared/model.bin", std::string(4096, 'm'));
  files.WriteFile("root/tenants/1/mine.bin", std::string(4096, '1'));
  engine::EngineOptions eo = testing::TestEngineOptions();
  eo.resource_root = (files.path() / "root").string();
  server::ServerOptions so;
  so.tenants_file = files.WriteFile("tenants.txt", kTenants);
  auto ts = TestServer::Start(so, eo);
  ASSERT_NE(ts, nullptr);
  auto admin = ts->Client("token-of-the-admin");
  auto one = ts->Client("token-of-tenant-one");
  auto two = ts->Client("token-of-tenant-two");
  v1::RegisterResourceRequest reg;
  reg.set_path("model.bin");
  reg.set_shared(true);
  v1::RegisterResourceResponse id;
  EXPECT_EQ(one->megakernel()
                ->RegisterResource(one->NewContext(absl::Seconds(5)).get(), reg, &id)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(admin->megakernel()
                  ->RegisterResource(admin->NewContext(absl::Seconds(5)).get(), reg, &id)
                  .ok());
  for (auto* tenant : {one.get(), two.get()}) {
    auto loaded = tenant->Publish({Slot{0xFFFD, 2, {id.resource_id(), 0}}}, absl::Seconds(30));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->completions[0].status, client::Completion::Status::kDone);
    v1::ListResourcesResponse listed;
    ASSERT_TRUE(tenant->megakernel()
                    ->ListResources(tenant->NewContext(absl::Seconds(5)).get(), {}, &listed)
                    .ok());
    ASSERT_EQ(listed.resources_size(), 1);
    EXPECT_TRUE(listed.resources(0).shared());
  }
  v1::EvictResourceRequest evict;
  evict.set_resource_id(id.resource_id());
  v1::EvictResourceResponse evicted;
  EXPECT_EQ(one->megakernel()
                ->EvictResource(one->NewContext(absl::Seconds(5)).get(), evict, &evicted)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Tenant 2 cannot name tenant 1's file.
  v1::RegisterResourceRequest theirs;
  theirs.set_path("mine.bin");
  EXPECT_EQ(two->megakernel()
                ->RegisterResource(two->NewContext(absl::Seconds(5)).get(), theirs, &id)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  evict.set_shared(true);
  EXPECT_TRUE(admin->megakernel()
                  ->EvictResource(admin->NewContext(absl::Seconds(5)).get(), evict, &evicted)
                  .ok());
}

TEST(TenantsFileTest, MalformedFileIsAClearStartupError) {
  auto engine = *engine::CreateEngine(testing::TestEngineOptions());
  ASSERT_TRUE(engine->Start().ok());
  server::ServerOptions so;
  so.listen = "127.0.0.1:0";
  const testing::ScopedTempDir files("mk_auth");
  so.tenants_file = files.WriteFile("bad_tenants.txt", "tenant 99 some-long-token\n");
  auto s = server::Server::Create(so, engine.get());
  EXPECT_THAT(s.status().message(), HasSubstr("bad_tenants.txt:1: tenant id '99'"));
  so.tenants_file = "/nonexistent/tenants.txt";
  EXPECT_EQ(server::Server::Create(so, engine.get()).status().code(), absl::StatusCode::kNotFound);
}

// Certificates made with the openssl CLI for this test: a CA, a server certificate for
// "localhost", a client certificate, and client certificates named tenant-one and tenant-two,
// all signed by the CA.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/mk_tls");
    const std::string d = *dir_;
    const std::string script =
        "set -e; rm -rf " + d + "; mkdir -p " + d + "; cd " + d +
        ";"
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=mk-test-ca "
        "  -keyout ca.key -out ca.pem 2>/dev/null;"
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext;"
        "for who in server client; do "
        "  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout $who.key "
        "    -out $who.csr 2>/dev/null;"
        "  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "    -extfile san.ext -out $who.pem 2>/dev/null;"
        "done;"
        "for who in one two; do "
        "  openssl req -newkey rsa:2048 -nodes -subj /CN=tenant-$who -keyout $who.key "
        "    -out $who.csr 2>/dev/null;"
        "  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "    -out $who.pem 2>/dev/null;"
        "done";
    ASSERT_EQ(std::system(script.c_str()), 0) << "openssl failed";
  }
  static std::string Path(const std::string& f) { return *dir_ + "/" + f; }
  static std::string* dir_;
};
std::string* TlsTest::dir_ = nullptr;

TEST_F(TlsTest, MutualTlsAcceptsSignedClientsOnly) {
  server::ServerOptions so;
  so.tls_cert_file = Path("server.pem");
  so.tls_key_file = Path("server.key");
  so.tls_client_ca_file = Path("ca.pem");
  auto ts = TestServer::Start(so);
  ASSERT_NE(ts, nullptr);
  client::ClientOptions co;
  co.target = ts->target();
  co.tls_ca_file = Path("ca.pem");
  co.tls_server_name = "localhost";
  co.max_attempts = 1;
  co.rpc_timeout = absl::Seconds(5);
  auto without_cert = *client::Client::Create(co);
  EXPECT_FALSE(without_cert->Publish({Slot{}}).ok()) << "mTLS requires a client certificate";
  co.tls_cert_file = Path("client.pem");
  co.tls_key_file = Path("client.key");
  auto with_cert = *client::Client::Create(co);
  auto r = with_cert->Publish({Slot{}}, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->completions.size(), 1u);
  client::ClientOptions plaintext;
  plaintext.target = ts->target();
  plaintext.max_attempts = 1;
  plaintext.rpc_timeout = absl::Seconds(5);
  EXPECT_FALSE((*client::Client::Create(plaintext))->Publish({Slot{}}).ok());
}

// Under mutual TLS a tenant's token can be bound to its certificate ('cert' lines): the token
// alone, or with another tenant's certificate, is refused (the finding: any certificate the CA
// signed could carry any tenant's token).
TEST_F(TlsTest, ATokenBoundToACertificateNeedsThatCertificate) {
  const testing::ScopedTempDir files("mk_tls_bind");
  server::ServerOptions so;
  so.tls_cert_file = Path("server.pem");
  so.tls_key_file = Path("server.key");
  so.tls_client_ca_file = Path("ca.pem");
  so.tenants_file = files.WriteFile("tenants.txt",
                                    "tenant 1 token-of-tenant-one\n"
                                    "tenant 2 token-of-tenant-two\n"
                                    "cert 1 tenant-one\n");
  auto ts = TestServer::Start(so);
  ASSERT_NE(ts, nullptr);
  auto client = [&](const std::string& token, const std::string& cert) {
    client::ClientOptions co;
    co.target = ts->target();
    co.token = token;
    co.tls_ca_file = Path("ca.pem");
    co.tls_server_name = "localhost";
    co.tls_cert_file = Path(cert + ".pem");
    co.tls_key_file = Path(cert + ".key");
    co.max_attempts = 1;
    co.rpc_timeout = absl::Seconds(10);
    return *client::Client::Create(co);
  };
  EXPECT_TRUE(client("token-of-tenant-one", "one")->Publish({Slot{}}, absl::Seconds(10)).ok());
  absl::Status wrong = client("token-of-tenant-one", "two")->Publish({Slot{}}).status();
  EXPECT_EQ(wrong.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(wrong.message(), HasSubstr("tenant 1's token is bound to a client certificate "
                                         "named tenant-one"));
  EXPECT_THAT(wrong.message(), HasSubstr("presented one named tenant-two"));
  EXPECT_EQ(client("token-of-tenant-one", "client")->Publish({Slot{}}).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(client("token-of-tenant-two", "two")->Publish({Slot{}}, absl::Seconds(10)).ok())
      << "tenant 2 has no binding: any certificate the CA signed";
}

// On a TLS listener a call's token is checked on its metadata, before gRPC reads the body (the
// finding: anonymous calls made the server hold whole 64 MiB messages before any check). The
// proof: an anonymous message over --max_message_bytes is refused for its missing token, not
// for its size, which gRPC checks as it reads the body. Health stays anonymous.
TEST_F(TlsTest, AnonymousCallsAreRefusedBeforeTheirBodyIsRead) {
  const testing::ScopedTempDir files("mk_tls_early");
  server::ServerOptions so;
  so.tls_cert_file = Path("server.pem");
  so.tls_key_file = Path("server.key");
  so.max_message_bytes = 1 << 20;
  so.tenants_file = files.WriteFile("tenants.txt", "tenant 1 token-of-tenant-one\n");
  auto ts = TestServer::Start(so);
  ASSERT_NE(ts, nullptr);
  auto client = [&](const std::string& token) {
    client::ClientOptions co;
    co.target = ts->target();
    co.token = token;
    co.tls_ca_file = Path("ca.pem");
    co.tls_server_name = "localhost";
    co.max_attempts = 1;
    co.rpc_timeout = absl::Seconds(10);
    return *client::Client::Create(co);
  };
  const std::string big(2 << 20, 'x');
  for (const std::string& token : {std::string(), std::string("not-a-token")}) {
    absl::Status refused = client(token)->Echo(big).status();
    EXPECT_EQ(refused.code(), absl::StatusCode::kUnauthenticated) << refused;
    EXPECT_THAT(refused.message(), HasSubstr("checked before the request body was read"));
  }
  EXPECT_EQ(client("token-of-tenant-one")->Echo(big).status().code(),
            absl::StatusCode::kResourceExhausted)
      << "with a token, the size limit applies as before";
  auto echoed = client("token-of-tenant-one")->Echo("hello");
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  auto anonymous = client("");
  auto health = grpc::health::v1::Health::NewStub(anonymous->channel());
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, req, &resp).ok()) << "health needs no token";
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(TlsTest, CertificateBindingsWithoutMutualTlsAreRefused) {
  const testing::ScopedTempDir files("mk_tls_bind_plain");
  server::ServerOptions so;
  so.tenants_file = files.WriteFile("tenants.txt", "tenant 1 token-of-tenant-one\ncert 1 x\n");
  auto engine = *engine::CreateEngine(testing::TestEngineOptions());
  so.listen = "127.0.0.1:0";
  auto s = server::Server::Create(so, engine.get());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("set --tls_client_ca_file"));
  const testing::ScopedTempDir bad("mk_tls_bind_bad");
  so.tenants_file = bad.WriteFile("tenants.txt", "cert 7x tenant-one\n");
  EXPECT_THAT(server::Server::Create(so, engine.get()).status().message(),
              HasSubstr("tenants.txt:1: cert binds '7x'"));
}

TEST_F(TlsTest, MisconfiguredTlsIsAClearError) {
  auto engine = *engine::CreateEngine(testing::TestEngineOptions());
  ASSERT_TRUE(engine->Start().ok());
  server::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.tls_cert_file = Path("server.pem");
  EXPECT_THAT(server::Server::Create(so, engine.get()).status().message(),
              HasSubstr("both --tls_cert_file and --tls_key_file"));
}

// A certificate or key that is not PEM, or a key of another certificate, is named as such before
// the server starts (gRPC would only fail to bind, which read as "address in use").
TEST_F(TlsTest, BadCertificatesAndKeysAreNamed) {
  auto engine = *engine::CreateEngine(testing::TestEngineOptions());
  ASSERT_TRUE(engine->Start().ok());
  const testing::ScopedTempDir files("mk_tls_bad");
  server::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.tls_cert_file = files.WriteFile("garbage.pem", "not a certificate\n");
  so.tls_key_file = Path("server.key");
  EXPECT_THAT(server::Server::Create(so, engine.get()).status().message(),
              HasSubstr("--tls_cert_file " + so.tls_cert_file + " holds no PEM certificate"));
  so.tls_cert_file = Path("server.pem");
  so.tls_key_file = files.WriteFile("garbage.key", "not a key\n");
  EXPECT_THAT(server::Server::Create(so, engine.get()).status().message(),
              HasSubstr("holds no unencrypted PEM private key"));
  so.tls_key_file = Path("client.key");
  EXPECT_THAT(server::Server::Create(so, engine.get()).status().message(),
              HasSubstr("does not belong to the certificate"));
}

}  // namespace
}  // namespace mk
