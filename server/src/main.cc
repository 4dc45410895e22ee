// megakerneld: the gRPC front door of the megakernel engine.
//
// Threads: main (startup, then waits for a shutdown request), a signal thread (sigwait on
// SIGTERM/SIGINT), gRPC's threads, and the engine's. Shutdown (SIGTERM, SIGINT or
// Admin.Shutdown): health NOT_SERVING, stop accepting, drain accepted work (or fail it with
// FAULT ENGINE_RESTART when Admin.Shutdown asked for no drain), stop gRPC, exit 0.
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#ifndef MK_VERSION
#define MK_VERSION "0.1.0"
#endif

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "mk/base/log.h"
#include "mk/engine/engine.h"
#include "mk/server/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "host:port to serve gRPC on; port 0 picks a free port (printed at startup)");
ABSL_FLAG(std::string, engine, "auto",
          "engine backend: auto (CUDA when a usable GPU is present, else CPU), cpu, cuda, or "
          "cuda-emulated (the CUDA engine's host side with host threads in the GPU's place; for "
          "testing)");
ABSL_FLAG(uint32_t, ring_slots, 1u << 16, "ring slots (64 bytes each) shared by all tenants");
ABSL_FLAG(uint32_t, workers, 0,
          "executors: CPU engine worker threads (0 = one per core minus one), or CUDA engine "
          "persistent blocks (0 = 8)");
ABSL_FLAG(int64_t, idle_spin_us, 200,
          "microseconds an idle engine thread keeps polling for work before it parks: lower "
          "latency for sparse requests against CPU right after a burst (0 parks at once)");
ABSL_FLAG(uint32_t, claim_batch, 1024,
          "slots a worker claims at once from a priority partition (1..1024)");
ABSL_FLAG(uint32_t, max_tenants, 1024, "tenants the engine serves (ids 0..max_tenants-1)");
ABSL_FLAG(uint32_t, scratch_words, 64, "scratch words per tenant window");
ABSL_FLAG(std::string, resource_root, "",
          "directory holding the files LOAD_MISS loads (resources are registered relative to "
          "it); empty disables LOAD_MISS and CHECKSUM");
ABSL_FLAG(uint64_t, residency_budget_bytes, 1ull << 30,
          "bytes of resident resource copies; least recently used ones are evicted beyond it");
ABSL_FLAG(uint64_t, tenant_residency_bytes, 256ull << 20,
          "resident bytes one tenant (or the shared folder) may hold; its loads evict only its "
          "own copies (0 = the whole budget)");
ABSL_FLAG(uint32_t, max_resources_per_tenant, 1024,
          "resources one tenant may have registered at once (0 = no limit)");
ABSL_FLAG(uint64_t, tenant_buffer_bytes, 1ull << 30,
          "bytes of buffers one tenant may hold (0 = no limit; docs/buffers.md)");
ABSL_FLAG(uint32_t, max_buffers_per_tenant, 1024, "buffers one tenant may hold (0 = no limit)");
ABSL_FLAG(uint64_t, buffer_budget_bytes, 8ull << 30,
          "bytes all tenants' buffers may hold together (0 = no limit)");
ABSL_FLAG(uint64_t, max_stored_completions, 1ull << 22,
          "completions owed to Poll (in flight or stored) in all before Publish answers "
          "RESOURCE_EXHAUSTED");
ABSL_FLAG(uint64_t, max_outstanding_slots_per_tenant, 0,
          "slots one tenant may have in flight (published, not yet completed) over all "
          "priorities; 0: no fixed cap (a tenant still holds at most its fair share of a "
          "contended priority partition)");
ABSL_FLAG(double, max_tenant_partition_share, 15.0 / 16.0,
          "the most of a priority partition one tenant may hold (0 < share <= 0.9375): another "
          "tenant's slot waits behind at most this much of the partition");
ABSL_FLAG(uint64_t, max_stored_completions_per_tenant, 1ull << 20,
          "the same for one tenant (0 = no per-tenant limit)");
ABSL_FLAG(absl::Duration, completion_ttl, absl::Minutes(10),
          "a completion nobody polls within this long is dropped (mk_completions_expired_total)");
ABSL_FLAG(std::string, io_backend, "auto",
          "resource reads: auto (io_uring, else a pread thread pool with a log line), io_uring, "
          "or threads");
ABSL_FLAG(bool, io_direct, false,
          "read resources with O_DIRECT, bypassing the page cache (resource offsets and lengths "
          "must be multiples of 4096)");
ABSL_FLAG(std::string, tenants_file, "",
          "bearer tokens: lines 'tenant <id> <token>' and 'admin <token>'; empty = "
          "single-tenant development mode (every caller is tenant 0 and admin)");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM server certificate (enables TLS with --tls_key_file)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)");
ABSL_FLAG(std::string, metrics_listen, "auto",
          "Prometheus /metrics address (host:port; port 0 picks one); auto: the --listen host, "
          "port 9464 (metrics are not exposed wider than gRPC); empty: no endpoint");
ABSL_FLAG(bool, metrics_tenant_labels, true,
          "per-tenant series on /metrics (false: every tenant counts as tenant=\"other\", so "
          "/metrics names no tenant)");
ABSL_FLAG(bool, allow_development_mode_off_loopback, false,
          "let development mode (no --tenants_file: every caller is admin) listen on a "
          "non-loopback address");
ABSL_FLAG(uint64_t, max_message_bytes, 64ull << 20, "largest gRPC request or response message");
ABSL_FLAG(absl::Duration, keepalive_min_ping_interval, absl::Seconds(10),
          "clients may send keepalive pings this often (also between calls); faster ones get "
          "GOAWAY too_many_pings");
ABSL_FLAG(absl::Duration, max_connection_idle, absl::Minutes(5),
          "close connections without calls for this long (0: never)");
ABSL_FLAG(absl::Duration, max_connection_age, absl::ZeroDuration(),
          "close connections after this long, with --max_connection_age_grace for their calls "
          "(0: never; set it behind a load balancer to rebalance)");
ABSL_FLAG(absl::Duration, max_connection_age_grace, absl::Seconds(30),
          "how long calls on a connection closed for its age may still run");
ABSL_FLAG(uint32_t, max_streams_per_connection, 256, "concurrent calls one connection may hold");
ABSL_FLAG(uint32_t, max_streams_per_tenant, 16,
          "open Stream and WatchTelemetry calls one tenant may hold (0 = no limit)");
ABSL_FLAG(int, metrics_top_tenants, 20,
          "tenants with their own label in per-tenant metrics; the rest are tenant=\"other\"");
ABSL_FLAG(absl::Duration, watchdog_interval, absl::Seconds(1),
          "how often the watchdog samples engine progress; 0 disables it");
ABSL_FLAG(int, watchdog_stall_intervals, 2,
          "samples without progress, while work waits, that mark the engine stalled");
ABSL_FLAG(bool, watchdog_recover, true,
          "on a stall, restart the engine (in-flight slots fail with FAULT ENGINE_RESTART)");
ABSL_FLAG(uint32_t, cuda_submission_queues, 0,
          "CUDA engine: submission queues, each with its own reaper thread (1..8, at most one per "
          "block); 0 = one per block");
ABSL_FLAG(bool, cuda_scout_warps, true,
          "CUDA engine: each block's last four warps probe for lone requests (lower one-slot "
          "latency); false makes every thread a worker");
ABSL_FLAG(uint32_t, cuda_max_backoff_ns, 250,
          "CUDA engine: an idle poller's longest nap between doorbell reads: lower reads the "
          "host's memory more often while idle, higher delays the first request after a pause");
ABSL_FLAG(absl::Duration, cuda_stop_timeout, absl::Seconds(2),
          "CUDA engine: how long the kernel may take to stop before it counts as unresponsive "
          "(the engine then stops executing; restart the process)");
ABSL_FLAG(bool, cuda_inline_dispatch, false,
          "CUDA engine: publishers dispatch every publish themselves instead of handing larger "
          "ones to the reaper threads (for measurements)");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "on SIGTERM, how long accepted work may take to finish before the engine fails it");

namespace {

// Set once by a signal or by Admin.Shutdown; main waits on it.
class ShutdownRequest {
 public:
  void Request(bool drain, const char* why) {
    std::lock_guard<std::mutex> lock(mu_);
    if (requested_) return;
    requested_ = true;
    drain_ = drain;
    why_ = why;
    cv_.notify_all();
  }
  // Returns (drain, why).
  std::pair<bool, const char*> Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return requested_; });
    return {drain_, why_};
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool requested_ = false;
  bool drain_ = true;
  const char* why_ = "";
};

// The engine's options from the flags; INVALID_ARGUMENT for an unknown --engine.
absl::StatusOr<mk::engine::EngineOptions> EngineOptionsFromFlags() {
  mk::engine::EngineOptions eo;
  auto backend = mk::engine::ParseBackend(absl::GetFlag(FLAGS_engine));
  if (!backend.ok()) return backend.status();
  eo.backend = *backend;
  eo.ring_slots = absl::GetFlag(FLAGS_ring_slots);
  eo.workers = absl::GetFlag(FLAGS_workers);
  eo.idle_spin = absl::Microseconds(std::max<int64_t>(0, absl::GetFlag(FLAGS_idle_spin_us)));
  eo.max_tenants = absl::GetFlag(FLAGS_max_tenants);
  eo.claim_batch = absl::GetFlag(FLAGS_claim_batch);
  eo.resource_root = absl::GetFlag(FLAGS_resource_root);
  eo.residency_budget_bytes = absl::GetFlag(FLAGS_residency_budget_bytes);
  eo.tenant_residency_bytes = absl::GetFlag(FLAGS_tenant_residency_bytes);
  eo.max_stored_completions = absl::GetFlag(FLAGS_max_stored_completions);
  eo.max_stored_completions_per_tenant = absl::GetFlag(FLAGS_max_stored_completions_per_tenant);
  eo.max_outstanding_slots_per_tenant = absl::GetFlag(FLAGS_max_outstanding_slots_per_tenant);
  eo.max_tenant_partition_share = absl::GetFlag(FLAGS_max_tenant_partition_share);
  eo.completion_ttl = absl::GetFlag(FLAGS_completion_ttl);
  eo.max_resources_per_tenant = absl::GetFlag(FLAGS_max_resources_per_tenant);
  eo.tenant_buffer_bytes = absl::GetFlag(FLAGS_tenant_buffer_bytes);
  eo.max_buffers_per_tenant = absl::GetFlag(FLAGS_max_buffers_per_tenant);
  eo.buffer_budget_bytes = absl::GetFlag(FLAGS_buffer_budget_bytes);
  eo.io_backend = absl::GetFlag(FLAGS_io_backend);
  eo.io_direct = absl::GetFlag(FLAGS_io_direct);
  eo.scratch_words = absl::GetFlag(FLAGS_scratch_words);
  eo.cuda.submission_queues = absl::GetFlag(FLAGS_cuda_submission_queues);
  eo.cuda.scout_warps = absl::GetFlag(FLAGS_cuda_scout_warps);
  eo.cuda.max_backoff_ns = absl::GetFlag(FLAGS_cuda_max_backoff_ns);
  eo.cuda.stop_timeout = absl::GetFlag(FLAGS_cuda_stop_timeout);
  eo.cuda.inline_dispatch = absl::GetFlag(FLAGS_cuda_inline_dispatch);
  return eo;
}

// The server's options from the flags (on_shutdown_request is the caller's).
mk::server::ServerOptions ServerOptionsFromFlags() {
  mk::server::ServerOptions so;
  so.listen = absl::GetFlag(FLAGS_listen);
  so.tenants_file = absl::GetFlag(FLAGS_tenants_file);
  so.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  so.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  so.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  so.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  if (so.metrics_listen == "auto") {
    so.metrics_listen = so.listen.substr(0, so.listen.rfind(':')) + ":9464";
  }
  so.metrics_top_tenants =
      absl::GetFlag(FLAGS_metrics_tenant_labels) ? absl::GetFlag(FLAGS_metrics_top_tenants) : 0;
  so.allow_development_mode_off_loopback = absl::GetFlag(FLAGS_allow_development_mode_off_loopback);
  so.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  so.keepalive_min_ping_interval = absl::GetFlag(FLAGS_keepalive_min_ping_interval);
  so.max_connection_idle = absl::GetFlag(FLAGS_max_connection_idle);
  so.max_connection_age = absl::GetFlag(FLAGS_max_connection_age);
  so.max_connection_age_grace = absl::GetFlag(FLAGS_max_connection_age_grace);
  so.max_concurrent_streams_per_connection = absl::GetFlag(FLAGS_max_streams_per_connection);
  so.max_streams_per_tenant = absl::GetFlag(FLAGS_max_streams_per_tenant);
  so.watchdog.interval = absl::GetFlag(FLAGS_watchdog_interval);
  so.watchdog.stall_intervals = absl::GetFlag(FLAGS_watchdog_stall_intervals);
  so.watchdog.recover = absl::GetFlag(FLAGS_watchdog_recover);
  return so;
}

// The startup lines on stdout (program output: scripts wait for "listening on").
void PrintStartup(const mk::engine::Engine& engine, const mk::server::Server& server,
                  const mk::server::ServerOptions& so) {
  const auto info = engine.info();
  std::printf("megakerneld: engine %s (%s), %u ring slots\n", info.backend.c_str(),
              info.device.c_str(), info.ring_slots);
  if (server.development_mode()) {
    std::printf(
        "megakerneld: DEVELOPMENT MODE: no --tenants_file, every caller is tenant 0 and "
        "admin; do not expose this port\n");
  }
  const std::string host = so.listen.substr(0, so.listen.rfind(':'));
  std::printf("megakerneld: listening on %s:%d (%s)\n", host.c_str(), server.port(),
              so.tls_cert_file.empty() ? "plaintext" : "TLS");
  if (server.metrics_port() != 0) {
    const std::string mhost = so.metrics_listen.substr(0, so.metrics_listen.rfind(':'));
    std::printf("megakerneld: metrics on http://%s:%d/metrics\n", mhost.c_str(),
                server.metrics_port());
  }

  std::fflush(stdout);
}

int Fail(const absl::Status& s) {
  mk::base::LogError("megakerneld: ", s.ToString());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "megakerneld: serves the megakernel over gRPC (mk.v1.Megakernel, mk.v1.Admin, "
      "mk.v1.Diagnostics, grpc.health.v1.Health, reflection).\n"
      "Usage: megakerneld [--listen=127.0.0.1:50051] [--engine=auto|cpu|cuda|cuda-emulated] "
      "[--tenants_file=FILE] [--tls_cert_file=PEM --tls_key_file=PEM "
      "[--tls_client_ca_file=PEM]]");
  absl::FlagsUsageConfig usage;
  // --help lists the flags this file defines (absl's default matches files named after the
  // program, which finds none here); --version prints the version.
  usage.contains_help_flags = [](absl::string_view path) {
    return absl::EndsWith(path, "server/src/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.version_string = [] { return std::string("megakerneld " MK_VERSION "\n"); };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);

  // Block the shutdown signals in every thread; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto eo = EngineOptionsFromFlags();
  if (!eo.ok()) return Fail(eo.status());
  auto engine = mk::engine::CreateEngine(*eo);
  if (!engine.ok()) return Fail(engine.status());
  if (absl::Status s = (*engine)->Start(); !s.ok()) return Fail(s);

  ShutdownRequest shutdown;
  mk::server::ServerOptions so = ServerOptionsFromFlags();
  so.on_shutdown_request = [&shutdown](bool drain) { shutdown.Request(drain, "Admin.Shutdown"); };
  auto server = mk::server::Server::Create(so, engine->get());
  if (!server.ok()) return Fail(server.status());

  PrintStartup(**engine, **server, so);
  std::thread([&shutdown, signals] {
    int signal = 0;
    sigwait(&signals, &signal);
    shutdown.Request(true, signal == SIGTERM ? "SIGTERM" : "SIGINT");
    // A second signal while the drain runs ends the process at once (a hung drain needs no
    // SIGKILL): accepted work not yet finished is lost to its callers, hence the exit code.
    sigwait(&signals, &signal);
    static constexpr char kMessage[] =
        "megakerneld: second signal during the drain: exiting now without finishing it\n";
    (void)!write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
    _exit(3);
  }).detach();

  const auto [drain, why] = shutdown.Wait();
  std::printf("megakerneld: %s: %s\n", why, drain ? "draining" : "failing in-flight work");
  std::fflush(stdout);
  absl::StatusOr<mk::engine::EngineCounters> counters =
      drain ? (*server)->DrainAndShutdown(absl::Now() + absl::GetFlag(FLAGS_drain_timeout))
            : (*engine)->Shutdown();
  if (!drain) (*server)->DrainAndShutdown(absl::Now()).IgnoreError();
  (*server)->Wait();
  server->reset();
  auto final_counters = (*engine)->Shutdown();  // fails whatever a timed-out drain left
  if (final_counters.ok()) counters = final_counters;
  std::printf("megakerneld: stopped: accepted=%llu done=%llu faulted=%llu cancelled=%llu\n",
              static_cast<unsigned long long>(counters->accepted),
              static_cast<unsigned long long>(counters->done),
              static_cast<unsigned long long>(counters->faulted),
              static_cast<unsigned long long>(counters->cancelled));
  return 0;
}
