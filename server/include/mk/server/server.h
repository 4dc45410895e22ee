// The megakerneld gRPC server: mk.v1.Megakernel, mk.v1.Admin, mk.v1.Diagnostics,
// grpc.health.v1.Health and server reflection, over one engine.
//
// Lifetime: Create binds and starts serving (health NOT_SERVING until one NOP has made a round
// trip through the engine, then SERVING). DrainAndShutdown stops new work, drains the engine and
// shuts the gRPC server down; the destructor does the same with an immediate deadline. The
// engine must outlive the Server.
#ifndef MK_SERVER_SERVER_H_
#define MK_SERVER_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mk/engine/engine.h"

namespace mk::server {

struct WatchdogOptions {
  absl::Duration interval = absl::Seconds(1);  // zero disables the watchdog
  int stall_intervals = 2;  // samples without progress (while work waits) that mean a stall
  bool recover = true;      // restart the engine on a stall
};

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";  // host:port; port 0 picks a free port
  std::string tenants_file;                // empty: single-tenant development mode
  std::string tls_cert_file;               // PEM; with tls_key_file enables TLS
  std::string tls_key_file;
  std::string tls_client_ca_file;  // PEM; requires and verifies client certificates
  // Open Stream and WatchTelemetry calls one tenant may hold (0: no limit).
  uint32_t max_streams_per_tenant = 16;
  // Completions a Stream may buffer for a slow reader before it stops reading requests.
  size_t stream_max_pending_completions = 1 << 16;
  // Prometheus /metrics ("host:port", port 0 picks a free one); empty disables the endpoint.
  std::string metrics_listen;
  // Tenants with their own label in per-tenant series; the rest are summed as tenant="other".
  int metrics_top_tenants = 20;
  WatchdogOptions watchdog;
  // Development mode (no tenants_file: every caller is tenant 0 and admin) listens on loopback
  // addresses only, unless this is set.
  bool allow_development_mode_off_loopback = false;
  // gRPC limits and connection management.
  size_t max_message_bytes = 64 << 20;  // largest request or response message
  // Clients may ping at most this often (more often: GOAWAY too_many_pings), also between
  // calls; 0 keeps gRPC's default (5 minutes, and no pings without calls).
  absl::Duration keepalive_min_ping_interval = absl::Seconds(10);
  // Connections idle (no call) this long are closed (their file descriptors freed); 0: never.
  absl::Duration max_connection_idle = absl::Minutes(5);
  // Connections are closed (GOAWAY, then max_connection_age_grace) after this long; 0: never.
  absl::Duration max_connection_age = absl::ZeroDuration();
  absl::Duration max_connection_age_grace = absl::Seconds(30);
  // Concurrent calls (streams) one connection may hold.
  uint32_t max_concurrent_streams_per_connection = 256;
  // Called (on a gRPC thread) when an admin calls Admin.Shutdown; the owner of the server
  // performs the shutdown, e.g. main() runs the same path as SIGTERM.
  std::function<void(bool drain)> on_shutdown_request;
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Create(const ServerOptions& options,
                                                        engine::Engine* engine);
  virtual ~Server() = default;

  virtual int port() const = 0;
  virtual int metrics_port() const = 0;  // 0 when the metrics endpoint is disabled
  // The Prometheus text exposition, as served on /metrics (also without the endpoint).
  virtual std::string RenderMetrics() = 0;
  virtual bool development_mode() const = 0;
  // Health NOT_SERVING, engine drain until `deadline`, then gRPC shutdown (in-flight RPCs get
  // until `deadline` to finish). Returns the engine's final counters.
  virtual absl::StatusOr<engine::EngineCounters> DrainAndShutdown(absl::Time deadline) = 0;
  // Blocks until the gRPC server has shut down.
  virtual void Wait() = 0;
};

}  // namespace mk::server

#endif  // MK_SERVER_SERVER_H_
