// Registers the server's metric families with the exporter. Everything is read at scrape time
// from snapshots: engine counters and statistics, a telemetry decode of the ring and control
// buffer, gRPC request statistics and the watchdog's state.
#ifndef MK_SERVER_SRC_METRICS_COLLECTOR_H_
#define MK_SERVER_SRC_METRICS_COLLECTOR_H_

#include "mk/engine/engine.h"
#include "mk/metrics/metrics.h"
#include "rpc_stats.h"
#include "watchdog.h"

namespace mk::server {

// All pointers must outlive the exporter's last scrape (destroy the exporter first).
// `watchdog` may be null (disabled).
void RegisterServerMetrics(metrics::Exporter* exporter, engine::Engine* engine,
                           const RpcStats* rpc_stats, const Watchdog* watchdog, int top_tenants);

}  // namespace mk::server

#endif  // MK_SERVER_SRC_METRICS_COLLECTOR_H_
