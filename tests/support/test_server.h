// A real megakerneld server (CPU engine, gRPC on 127.0.0.1 port 0) started in process, and
// clients of it. Shared by the integration tests.
#ifndef MK_TESTS_SUPPORT_TEST_SERVER_H_
#define MK_TESTS_SUPPORT_TEST_SERVER_H_

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "mk/client/client.h"
#include "mk/engine/engine.h"
#include "mk/server/server.h"

namespace mk::testing {

inline engine::EngineOptions TestEngineOptions() {
  engine::EngineOptions o;
  o.backend = engine::EngineOptions::Backend::kCpu;
  o.ring_slots = 1 << 14;
  o.workers = 1;
  o.max_tenants = 16;
  o.scratch_words = 64;
  return o;
}

struct TestServer {
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<server::Server> server;

  static std::unique_ptr<TestServer> Start(server::ServerOptions so = {},
                                           const engine::EngineOptions& eo = TestEngineOptions()) {
    auto t = std::make_unique<TestServer>();
    auto e = engine::CreateEngine(eo);
    EXPECT_TRUE(e.ok()) << e.status();
    if (!e.ok()) return nullptr;
    t->engine = *std::move(e);
    EXPECT_TRUE(t->engine->Start().ok());
    so.listen = "127.0.0.1:0";
    auto s = server::Server::Create(so, t->engine.get());
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return nullptr;
    t->server = *std::move(s);
    return t;
  }
  ~TestServer() {
    server.reset();
    if (engine != nullptr) engine->Shutdown().IgnoreError();
  }
  std::string target() const { return absl::StrCat("127.0.0.1:", server->port()); }
  std::unique_ptr<client::Client> Client(const std::string& token = "", int max_attempts = 1) {
    client::ClientOptions o;
    o.target = target();
    o.token = token;
    o.max_attempts = max_attempts;
    return *client::Client::Create(o);
  }
};

}  // namespace mk::testing

#endif  // MK_TESTS_SUPPORT_TEST_SERVER_H_
