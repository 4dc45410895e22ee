#include "metrics_collector.h"

#include <algorithm>
#include <mutex>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace mk::server {

namespace {

using metrics::Family;
using metrics::Sample;
using metrics::Type;

constexpr char kVersion[] = "0.1.0";

metrics::Histogram ToHistogram(const engine::LatencyHistogram& h) {
  metrics::Histogram out;
  for (uint64_t ns : engine::kLatencyBoundsNs) out.upper_bounds.push_back(ns * 1e-9);
  out.bucket_counts.assign(h.buckets.begin(), h.buckets.end());
  out.sum = h.sum_ns * 1e-9;
  return out;
}

Family Scalar(std::string name, std::string help, Type type, double value) {
  Family f{std::move(name), std::move(help), type, {}};
  f.samples.push_back(Sample{{}, value, {}});
  return f;
}

// Per-tenant outcome series with tenants beyond the top N (by published slots) summed into
// tenant="other", so label cardinality stays bounded whatever the tenant count.
void AddOutcomeFamilies(const engine::EngineStats& stats, int top_tenants,
                        std::vector<Family>* out) {
  const uint32_t tenants = static_cast<uint32_t>(stats.by_tenant.size());
  std::vector<uint64_t> published(tenants, 0);
  for (uint32_t t = 0; t < tenants; ++t) {
    for (uint32_t k = 0; k < engine::kOpcodeClassCount; ++k) {
      published[t] += stats.by_tenant[t][k][static_cast<uint32_t>(engine::Outcome::kPublished)];
    }
  }
  std::vector<uint32_t> order(tenants);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return published[a] > published[b]; });
  std::vector<bool> named(tenants, false);
  for (int i = 0; i < top_tenants && i < static_cast<int>(tenants); ++i) named[order[i]] = true;

  static constexpr const char* kNames[] = {"mk_slots_published_total", "mk_slots_completed_total",
                                           "mk_slots_faulted_total", "mk_slots_cancelled_total"};
  static constexpr const char* kHelp[] = {
      "Slots accepted into the ring, by tenant and opcode class.",
      "Slots that completed DONE, by tenant and opcode class.",
      "Slots that completed FAULT, by tenant and opcode class.",
      "Slots cancelled before an executor claimed them, by tenant and opcode class."};
  for (uint32_t o = 0; o < engine::kOutcomeCount; ++o) {
    Family f{kNames[o], kHelp[o], Type::kCounter, {}};
    std::array<uint64_t, engine::kOpcodeClassCount> other{};
    bool any_other = false;
    for (uint32_t t = 0; t < tenants; ++t) {
      for (uint32_t k = 0; k < engine::kOpcodeClassCount; ++k) {
        const uint64_t v = stats.by_tenant[t][k][o];
        if (published[t] == 0 && v == 0) continue;
        if (!named[t]) {
          other[k] += v;
          any_other = true;
          continue;
        }
        if (stats.by_tenant[t][k][static_cast<uint32_t>(engine::Outcome::kPublished)] == 0) {
          continue;
        }
        f.samples.push_back(
            Sample{{{"tenant", absl::StrCat(t)},
                    {"opcode_class", engine::OpcodeClassName(static_cast<engine::OpcodeClass>(k))}},
                   static_cast<double>(v),
                   {}});
      }
    }
    for (uint32_t k = 0; any_other && k < engine::kOpcodeClassCount; ++k) {
      f.samples.push_back(
          Sample{{{"tenant", "other"},
                  {"opcode_class", engine::OpcodeClassName(static_cast<engine::OpcodeClass>(k))}},
                 static_cast<double>(other[k]),
                 {}});
    }
    out->push_back(std::move(f));
  }
}

// The resource loader: io requests, bytes, latency, residency, load misses.
void AddIoFamilies(const engine::IoStats& io, std::vector<Family>* out) {
  Family backend{"mk_io_backend_info", "Resource reader backend (value 1).", Type::kGauge, {}};
  backend.samples.push_back(Sample{{{"backend", io.backend}}, 1, {}});
  out->push_back(std::move(backend));
  Family requests{"mk_io_requests_total", "Resource reads by result.", Type::kCounter, {}};
  requests.samples.push_back(Sample{{{"result", "ok"}}, static_cast<double>(io.requests_ok), {}});
  requests.samples.push_back(
      Sample{{{"result", "error"}}, static_cast<double>(io.requests_error), {}});
  out->push_back(std::move(requests));
  out->push_back(Scalar("mk_io_bytes_total", "Bytes read into resident copies.", Type::kCounter,
                        static_cast<double>(io.bytes)));
  Family latency{
      "mk_io_latency_seconds", "io request published to read complete.", Type::kHistogram, {}};
  latency.samples.push_back(Sample{{}, 0, ToHistogram(io.latency)});
  out->push_back(std::move(latency));
  out->push_back(Scalar("mk_resident_bytes", "Bytes held by resident resource copies.",
                        Type::kGauge, static_cast<double>(io.resident_bytes)));
  Family resources{"mk_resources", "Resources by state.", Type::kGauge, {}};
  resources.samples.push_back(
      Sample{{{"state", "registered"}}, static_cast<double>(io.registered_resources), {}});
  resources.samples.push_back(
      Sample{{{"state", "resident"}}, static_cast<double>(io.resident_resources), {}});
  resources.samples.push_back(
      Sample{{{"state", "loading"}}, static_cast<double>(io.loading_resources), {}});
  out->push_back(std::move(resources));
  Family misses{
      "mk_load_misses_total", "LOAD_MISS slots, by how they were served.", Type::kCounter, {}};
  misses.samples.push_back(Sample{{{"kind", "all"}}, static_cast<double>(io.load_misses), {}});
  misses.samples.push_back(Sample{{{"kind", "coalesced"}}, static_cast<double>(io.coalesced), {}});
  misses.samples.push_back(Sample{{{"kind", "requeued"}}, static_cast<double>(io.requeued), {}});
  out->push_back(std::move(misses));
  out->push_back(Scalar("mk_resource_evictions_total", "Resident copies evicted for budget.",
                        Type::kCounter, static_cast<double>(io.evictions)));
}

// The ring and control-buffer families, from one telemetry snapshot.
void AddTelemetryFamilies(const engine::TelemetrySnapshot& snapshot, std::vector<Family>* out) {
  Family slots{"mk_ring_slots", "Ring slots by protocol state.", Type::kGauge, {}};
  for (uint32_t s = 0; s < protocol::kSlotStatusCount; ++s) {
    slots.samples.push_back(
        Sample{{{"state", engine::SlotStatusName(static_cast<protocol::SlotStatus>(s))}},
               static_cast<double>(snapshot.occupancy.by_status[s]),
               {}});
  }
  out->push_back(std::move(slots));
  out->push_back(Scalar("mk_ring_capacity_slots", "Ring size in slots.", Type::kGauge,
                        static_cast<double>(snapshot.occupancy.total)));
  out->push_back(Scalar("mk_queue_depth_slots",
                        "Slots neither EMPTY nor DONE (published, claimed, waiting, faulted "
                        "not yet reaped).",
                        Type::kGauge, static_cast<double>(snapshot.occupancy.queue_depth)));
  out->push_back(Scalar("mk_control_done_slots",
                        "Control word DONE_COUNT: slots reaching DONE or FAULT (wraps at 2^32).",
                        Type::kGauge, snapshot.control.done_count));
  out->push_back(Scalar("mk_epoch", "Control word EPOCH (completed batch fences).", Type::kGauge,
                        snapshot.control.epoch));
  Family tenant_claims{"mk_tenant_fairness_claims",
                       "Control words 64..95: slots claimed per tenant slot (tenant % 32; "
                       "wraps at 2^32).",
                       Type::kGauge,
                       {}};
  for (uint32_t t = 0; t < snapshot.control.tenant_fairness.size(); ++t) {
    if (snapshot.control.tenant_fairness[t] == 0) continue;
    tenant_claims.samples.push_back(Sample{{{"tenant_slot", absl::StrCat(t)}},
                                           static_cast<double>(snapshot.control.tenant_fairness[t]),
                                           {}});
  }
  out->push_back(std::move(tenant_claims));
  Family priority_claims{"mk_priority_fairness_claims",
                         "Control words 136..140: slots claimed per priority (wraps).",
                         Type::kGauge,
                         {}};
  static constexpr const char* kPriorities[] = {"critical", "high", "normal", "low", "idle"};
  for (uint32_t p = 0; p < protocol::kPriorityCount; ++p) {
    priority_claims.samples.push_back(
        Sample{{{"priority", kPriorities[p]}},
               static_cast<double>(snapshot.control.priority_fairness[p]),
               {}});
  }
  out->push_back(std::move(priority_claims));
}

// In-flight and stored counts, outcomes by tenant and class, latency histograms, restarts, io.
void AddEngineFamilies(const engine::Engine& engine, int top_tenants, std::vector<Family>* out) {
  const engine::EngineCounters c = engine.counters();
  out->push_back(Scalar("mk_slots_in_flight", "Accepted slots without a terminal outcome yet.",
                        Type::kGauge, static_cast<double>(c.in_flight)));
  out->push_back(Scalar("mk_completions_stored", "Completions waiting to be collected by Poll.",
                        Type::kGauge, static_cast<double>(c.stored_completions)));
  out->push_back(Scalar("mk_completions_expired_total",
                        "Completions dropped uncollected after --completion_ttl.", Type::kCounter,
                        static_cast<double>(c.expired_completions)));
  engine::EngineStats stats;
  engine.Stats(&stats);
  AddOutcomeFamilies(stats, top_tenants, out);
  Family latency{"mk_slot_latency_seconds",
                 "Publish to completion, per slot (aggregated per reap pass).",
                 Type::kHistogram,
                 {}};
  latency.samples.push_back(Sample{{}, 0, ToHistogram(stats.latency)});
  out->push_back(std::move(latency));
  Family wait{"mk_slot_queue_wait_seconds",
              "Publish to claim by an executor, per slot (aggregated per claimed batch).",
              Type::kHistogram,
              {}};
  wait.samples.push_back(Sample{{}, 0, ToHistogram(stats.queue_wait)});
  out->push_back(std::move(wait));
  out->push_back(Scalar("mk_engine_restarts_total", "Engine restarts (watchdog recovery).",
                        Type::kCounter, static_cast<double>(stats.restarts)));
  AddIoFamilies(stats.io, out);
}

void AddWatchdogFamilies(const Watchdog& watchdog, std::vector<Family>* out) {
  const Watchdog::State w = watchdog.state();
  out->push_back(Scalar("mk_watchdog_stalled",
                        "1 while the watchdog considers the engine "
                        "stalled.",
                        Type::kGauge, w.stalled ? 1 : 0));
  out->push_back(Scalar("mk_watchdog_last_progress_age_seconds",
                        "Seconds since the engine last made progress (or had nothing to do).",
                        Type::kGauge, w.last_progress_age_seconds));
  out->push_back(Scalar("mk_watchdog_stalls_total", "Stalls the watchdog detected.", Type::kCounter,
                        static_cast<double>(w.stalls)));
}

void AddRpcFamilies(const RpcStats& rpc_stats, std::vector<Family>* out) {
  const RpcStats::Snapshot rpc = rpc_stats.Read();
  Family requests{
      "mk_grpc_requests_total", "gRPC requests by method and status code.", Type::kCounter, {}};
  for (const auto& [key, n] : rpc.requests) {
    requests.samples.push_back(Sample{
        {{"method", key.first}, {"code", absl::StrCat(key.second)}}, static_cast<double>(n), {}});
  }
  out->push_back(std::move(requests));
  Family durations{
      "mk_grpc_request_duration_seconds", "gRPC request latency by method.", Type::kHistogram, {}};
  for (const auto& [method, h] : rpc.latency) {
    durations.samples.push_back(Sample{{{"method", method}}, 0, ToHistogram(h)});
  }
  out->push_back(std::move(durations));
}

}  // namespace

void RegisterServerMetrics(metrics::Exporter* exporter, engine::Engine* engine,
                           const RpcStats* rpc_stats, const Watchdog* watchdog, int top_tenants) {
  // Scrapes may run concurrently; the telemetry decode reuses one snapshot under a lock.
  auto telemetry_mu = std::make_shared<std::mutex>();
  auto telemetry = std::make_shared<engine::TelemetrySnapshot>();
  exporter->AddCollector([=](std::vector<Family>* out) {
    const engine::EngineInfo info = engine->info();
    Family build{"mk_build_info", "megakerneld build and engine (value 1).", Type::kGauge, {}};
    build.samples.push_back(
        Sample{{{"version", kVersion}, {"backend", info.backend}, {"device", info.device}}, 1, {}});
    out->push_back(std::move(build));
    {
      std::lock_guard<std::mutex> lock(*telemetry_mu);
      if (engine->Telemetry({}, telemetry.get()).ok()) AddTelemetryFamilies(*telemetry, out);
    }
    AddEngineFamilies(*engine, top_tenants, out);
    if (watchdog != nullptr) AddWatchdogFamilies(*watchdog, out);
    AddRpcFamilies(*rpc_stats, out);
  });
}

}  // namespace mk::server
