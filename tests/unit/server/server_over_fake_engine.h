// A real megakerneld server (gRPC on 127.0.0.1, port 0) over a FakeEngine, and a client of it:
// the server's unit tests drive its services through real RPCs while the test decides what the
// engine answers and when slots complete.
#ifndef MK_TESTS_UNIT_SERVER_SERVER_OVER_FAKE_ENGINE_H_
#define MK_TESTS_UNIT_SERVER_SERVER_OVER_FAKE_ENGINE_H_

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "mk/client/client.h"
#include "mk/server/server.h"
#include "support/fake_engine.h"

namespace mk::server {

class ServerOverFakeEngine : public ::testing::Test {
 protected:
  // No watchdog (the fake makes no progress of its own) and no metrics endpoint.
  void StartServer(ServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    options.watchdog.interval = absl::ZeroDuration();
    auto server = Server::Create(options, &engine_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  std::unique_ptr<client::Client> NewClient(const std::string& token = "") {
    client::ClientOptions o;
    o.target = absl::StrCat("127.0.0.1:", server_->port());
    o.token = token;
    o.max_attempts = 1;  // the server's own answer, not the client's retries
    return *client::Client::Create(o);
  }

  mk::testing::FakeEngine engine_;  // outlives the server, which holds it
  std::unique_ptr<Server> server_;
};

}  // namespace mk::server

#endif  // MK_TESTS_UNIT_SERVER_SERVER_OVER_FAKE_ENGINE_H_
