// The metrics facade: Prometheus exposition without Prometheus types in the API.
//
// Metrics are collected at scrape time: collectors (functions the owner registers) append metric
// families built from snapshots of engine, server and watchdog state. Nothing is recorded per
// slot on a hot path; the engine keeps its own aggregated counters and histograms and the
// collectors read them when Prometheus asks.
//
// Thread safety: AddCollector may be called at any time; collectors run on the exporter's HTTP
// threads, possibly concurrently, and must be thread-safe and quick. The exporter must outlive
// nothing it calls: destroy it before the objects its collectors read.
#ifndef MK_METRICS_METRICS_H_
#define MK_METRICS_METRICS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace mk::metrics {

enum class Type { kCounter, kGauge, kHistogram };

using Labels = std::vector<std::pair<std::string, std::string>>;

struct Histogram {
  std::vector<double> upper_bounds;     // ascending, in base units; +Inf is implied
  std::vector<uint64_t> bucket_counts;  // per bucket (not cumulative); size = bounds + 1
  double sum = 0;
};

struct Sample {
  Labels labels;
  double value = 0;     // counters and gauges
  Histogram histogram;  // histograms
};

struct Family {
  std::string name;  // base units, `_total` for counters, `_seconds` for time histograms
  std::string help;
  Type type = Type::kGauge;
  std::vector<Sample> samples;
};

using Collector = std::function<void(std::vector<Family>* out)>;

class Exporter {
 public:
  // Serves GET /metrics on `listen` ("host:port"; port 0 picks a free one). UNAVAILABLE naming
  // the address and the cause when it cannot listen (e.g. the port is in use).
  static absl::StatusOr<std::unique_ptr<Exporter>> Create(const std::string& listen);
  // Without an HTTP endpoint: only Render (tests, benchmarks).
  static std::unique_ptr<Exporter> CreateUnserved();
  virtual ~Exporter() = default;

  virtual int port() const = 0;
  virtual void AddCollector(Collector collector) = 0;
  // The Prometheus text exposition of every collector's families (what GET /metrics returns).
  virtual std::string Render() = 0;
};

}  // namespace mk::metrics

#endif  // MK_METRICS_METRICS_H_
