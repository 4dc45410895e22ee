#include "mk/server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "admin_service.h"
#include "auth.h"
#include "credentials.h"
#include "megakernel_service.h"
#include "metrics_collector.h"
#include "mk/base/status_macros.h"
#include "mk/metrics/metrics.h"
#include "rpc_stats.h"
#include "watchdog.h"

namespace mk::server {

namespace {

constexpr char kServiceName[] = "mk.v1.Megakernel";
// Health service names for probes: readiness (SERVING once the engine made a round trip, false
// while draining; "" and kServiceName say the same) and liveness (stays SERVING while draining).
constexpr char kReadinessName[] = "mk.v1.Megakernel.Readiness";
constexpr char kLivenessName[] = "mk.v1.Megakernel.Liveness";
// How long open streams and waits may flush after a drain finished before they are cut.
constexpr absl::Duration kStreamFlushGrace = absl::Seconds(2);

class ServerImpl final : public Server {
 public:
  ServerImpl(engine::Engine* engine, std::unique_ptr<TenantDirectory> tenants,
             const ServerOptions& options)
      : engine_(engine),
        tenants_(std::move(tenants)),
        megakernel_(engine, tenants_.get(), options.max_streams_per_tenant,
                    options.stream_max_pending_completions),
        admin_(
            engine, tenants_.get(), [this](auto done) { DrainInBackground(std::move(done)); },
            options.on_shutdown_request),
        diagnostics_(tenants_.get()) {}

  ~ServerImpl() override {
    exporter_.reset();  // no scrape may outlive what it reads
    watchdog_.reset();
    if (server_ != nullptr) {
      draining_ = true;
      UpdateHealth();
      server_->Shutdown(std::chrono::system_clock::now());
      server_->Wait();
    }
    std::lock_guard<std::mutex> lock(drain_threads_mu_);
    for (std::thread& t : drain_threads_) t.join();
  }

  absl::Status Start(const ServerOptions& options) {
    auto credentials = MakeCredentials(options, tenants_.get());
    if (!credentials.ok()) return credentials.status();
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(rpc_stats_.InterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    builder.AddListeningPort(options.listen, *credentials, &port_);
    builder.RegisterService(&megakernel_);
    builder.RegisterService(&admin_);
    builder.RegisterService(&diagnostics_);
    ApplyConnectionOptions(options, &builder);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port_ == 0) {
      server_.reset();
      return absl::UnavailableError(absl::StrCat(
          "server: cannot listen on ", options.listen,
          "; the address is in use or malformed (use host:port; port 0 picks a free one)"));
    }
    if (!options.metrics_listen.empty()) {
      auto exporter = metrics::Exporter::Create(options.metrics_listen);
      if (!exporter.ok()) return exporter.status();
      exporter_ = *std::move(exporter);
    } else {
      exporter_ = metrics::Exporter::CreateUnserved();
    }
    UpdateHealth();
    // SERVING only once the engine has completed a round trip.
    engine::SlotPayload nop;
    auto r = engine_->Publish(0, {&nop, 1}, {});
    if (!r.ok()) return r.status();
    auto done = engine_->WaitFor(0, std::vector<uint64_t>{r->first_ticket},
                                 absl::Now() + absl::Seconds(30));
    if (!done.ok() || done->size() != 1) {
      return absl::UnavailableError(
          "server: the engine did not complete a NOP round trip within 30s; check the engine");
    }
    engine_ready_ = true;
    UpdateHealth();
    if (options.watchdog.interval > absl::ZeroDuration()) {
      watchdog_ = std::make_unique<Watchdog>(engine_, options.watchdog, [this](bool healthy) {
        engine_healthy_ = healthy;
        UpdateHealth();
      });
    }
    RegisterServerMetrics(exporter_.get(), engine_, &rpc_stats_, watchdog_.get(),
                          options.metrics_top_tenants);
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  int metrics_port() const override { return exporter_ == nullptr ? 0 : exporter_->port(); }
  std::string RenderMetrics() override { return exporter_->Render(); }
  bool development_mode() const override { return tenants_->development_mode(); }

  absl::StatusOr<engine::EngineCounters> DrainAndShutdown(absl::Time deadline) override {
    // No restart in the middle of a drain. The watchdog object stays: /metrics reads its state
    // until the exporter goes (the destructor).
    if (watchdog_ != nullptr) watchdog_->Stop();
    draining_ = true;
    UpdateHealth();
    megakernel_.EndWatchStreams();
    auto counters = engine_->Drain(deadline);
    // Every accepted slot is terminal now: what is still open are idle streams and waits, which
    // get a short grace to flush their last completions, not the rest of the drain deadline.
    const absl::Time until =
        counters.ok() ? std::min(deadline, absl::Now() + kStreamFlushGrace) : deadline;
    if (counters.ok()) AwaitStoredCompletions(until);
    server_->Shutdown(absl::ToChronoTime(std::max(until, absl::Now())));
    return counters;
  }

  void Wait() override { server_->Wait(); }

 private:
  // SERVING when the engine has made its first round trip, the watchdog sees it healthy, and
  // no drain has begun.
  void UpdateHealth() {
    if (server_ == nullptr) return;
    const bool serving = engine_ready_ && engine_healthy_ && !draining_;
    auto* health = server_->GetHealthCheckService();
    health->SetServingStatus("", serving);
    health->SetServingStatus(kServiceName, serving);
    health->SetServingStatus(kReadinessName, serving);
    // Liveness stays SERVING through a drain (a draining pod must not be killed for it); only
    // an engine the watchdog found stalled, and could not restart, is not alive.
    health->SetServingStatus(kLivenessName, engine_healthy_);
  }

  // Completions stored for Poll belong to clients that published without waiting; Shutdown
  // refuses new calls, so their outcomes would go with the process though the drain finished
  // the work (mkctl soak lost a few at every drain: the Poll for a slot that finished last
  // came after the shutdown). New Polls are served until those are collected or `until`
  // passes; a client that never polls costs a drain at most the grace.
  void AwaitStoredCompletions(absl::Time until) {
    while (engine_->counters().stored_completions != 0 && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(1));  // the engine has no "collected" notification
    }
  }

  // Admin.Drain: drains off the gRPC threads (a drain waits for the engine).
  void DrainInBackground(std::function<void(absl::StatusOr<engine::EngineCounters>)> done) {
    draining_ = true;
    UpdateHealth();
    megakernel_.EndWatchStreams();
    std::lock_guard<std::mutex> lock(drain_threads_mu_);
    drain_threads_.emplace_back(
        [this, done = std::move(done)] { done(engine_->Drain(absl::Now() + absl::Minutes(5))); });
  }

  engine::Engine* engine_;
  std::unique_ptr<TenantDirectory> tenants_;
  MegakernelService megakernel_;
  AdminService admin_;
  DiagnosticsService diagnostics_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  RpcStats rpc_stats_;
  std::unique_ptr<metrics::Exporter> exporter_;
  std::unique_ptr<Watchdog> watchdog_;
  std::atomic<bool> engine_ready_{false};
  std::atomic<bool> engine_healthy_{true};
  std::atomic<bool> draining_{false};
  std::mutex drain_threads_mu_;
  std::vector<std::thread> drain_threads_;  // guarded by drain_threads_mu_
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const ServerOptions& options,
                                                       engine::Engine* engine) {
  MK_RETURN_IF_ERROR(CheckDevelopmentModeExposure(options, options.tenants_file.empty()));
  std::unique_ptr<TenantDirectory> tenants;
  if (options.tenants_file.empty()) {
    tenants = TenantDirectory::DevelopmentMode();
  } else {
    auto loaded = TenantDirectory::Load(options.tenants_file, engine->info().max_tenants);
    if (!loaded.ok()) return loaded.status();
    tenants = *std::move(loaded);
  }
  if (tenants->binds_certificates() && options.tls_client_ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server: the tenants file ", options.tenants_file, " binds client certificates ('cert' ",
        "lines), which needs mutual TLS: set --tls_client_ca_file (with --tls_cert_file and ",
        "--tls_key_file)"));
  }
  auto server = std::make_unique<ServerImpl>(engine, std::move(tenants), options);
  if (absl::Status s = server->Start(options); !s.ok()) return s;
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace mk::server
