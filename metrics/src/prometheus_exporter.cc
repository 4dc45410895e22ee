// The Exporter on prometheus-cpp (core + pull). Every prometheus-cpp and civetweb exception is
// caught here and becomes a Status; nothing of prometheus-cpp leaves this file.
#include <exception>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "mk/metrics/metrics.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace mk::metrics {
namespace {

prometheus::MetricType ToPrometheus(Type t) {
  switch (t) {
    case Type::kCounter:
      return prometheus::MetricType::Counter;
    case Type::kGauge:
      return prometheus::MetricType::Gauge;
    case Type::kHistogram:
      return prometheus::MetricType::Histogram;
  }
  return prometheus::MetricType::Untyped;
}

prometheus::MetricFamily ToPrometheus(const Family& f) {
  prometheus::MetricFamily out;
  out.name = f.name;
  out.help = f.help;
  out.type = ToPrometheus(f.type);
  for (const Sample& s : f.samples) {
    prometheus::ClientMetric m;
    for (const auto& [k, v] : s.labels) m.label.push_back({k, v});
    switch (f.type) {
      case Type::kCounter:
        m.counter.value = s.value;
        break;
      case Type::kGauge:
        m.gauge.value = s.value;
        break;
      case Type::kHistogram: {
        uint64_t cumulative = 0;
        for (size_t b = 0; b < s.histogram.bucket_counts.size(); ++b) {
          cumulative += s.histogram.bucket_counts[b];
          const double bound = b < s.histogram.upper_bounds.size()
                                   ? s.histogram.upper_bounds[b]
                                   : std::numeric_limits<double>::infinity();
          m.histogram.bucket.push_back({cumulative, bound});
        }
        m.histogram.sample_count = cumulative;
        m.histogram.sample_sum = s.histogram.sum;
        break;
      }
    }
    out.metric.push_back(std::move(m));
  }
  return out;
}

// Runs the collectors at scrape time.
class CollectorSet final : public prometheus::Collectable {
 public:
  void Add(Collector c) {
    std::lock_guard<std::mutex> lock(mu_);
    collectors_.push_back(std::move(c));
  }
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<Family> families;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const Collector& c : collectors_) c(&families);
    }
    std::vector<prometheus::MetricFamily> out;
    out.reserve(families.size());
    for (const Family& f : families) out.push_back(ToPrometheus(f));
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Collector> collectors_;  // guarded by mu_
};

class PrometheusExporter final : public Exporter {
 public:
  PrometheusExporter(std::unique_ptr<prometheus::Exposer> exposer, int port)
      : exposer_(std::move(exposer)), port_(port), collectors_(std::make_shared<CollectorSet>()) {
    if (exposer_ != nullptr) exposer_->RegisterCollectable(collectors_);
  }
  ~PrometheusExporter() override {
    if (exposer_ != nullptr) exposer_->RemoveCollectable(collectors_);
  }
  int port() const override { return port_; }
  void AddCollector(Collector c) override { collectors_->Add(std::move(c)); }
  std::string Render() override {
    try {
      return prometheus::TextSerializer().Serialize(collectors_->Collect());
    } catch (const std::exception& e) {
      return absl::StrCat("# metrics: rendering failed: ", e.what(), "\n");
    }
  }

 private:
  std::unique_ptr<prometheus::Exposer> exposer_;  // stops serving before collectors_ goes
  int port_;
  std::shared_ptr<CollectorSet> collectors_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Exporter>> Exporter::Create(const std::string& listen) {
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb serves one connection per thread: enough threads that a few idle or stalled
    // clients do not block scrapes, and a request timeout that frees a thread a stalled client
    // holds (a connection that sends no complete request within 5 s is closed).
    exposer = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", listen, "num_threads", "8", "request_timeout_ms", "5000"});
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "metrics: cannot listen on ", listen, " (", e.what(),
        "); the port is in use or the address is invalid; choose another --metrics_listen"));
  }
  std::vector<int> ports;
  try {
    ports = exposer->GetListeningPorts();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("metrics: cannot read the bound port: ", e.what()));
  }
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("metrics: no listening port for ", listen));
  }
  return std::unique_ptr<Exporter>(new PrometheusExporter(std::move(exposer), ports.front()));
}

std::unique_ptr<Exporter> Exporter::CreateUnserved() {
  return std::make_unique<PrometheusExporter>(nullptr, 0);
}

}  // namespace mk::metrics
