#include "rpc_stats.h"

#include <chrono>

namespace mk::server {

namespace {

uint64_t Now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One per call: remembers when the call arrived and records when the status is sent.
class StatsInterceptor final : public grpc::experimental::Interceptor {
 public:
  StatsInterceptor(RpcStats* stats, std::string method)
      : stats_(stats), method_(std::move(method)), start_ns_(Now()) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      stats_->Record(method_, static_cast<int>(methods->GetSendStatus().error_code()),
                     Now() - start_ns_);
    }
    methods->Proceed();
  }

 private:
  RpcStats* stats_;
  std::string method_;
  uint64_t start_ns_;
};

class StatsInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit StatsInterceptorFactory(RpcStats* stats) : stats_(stats) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new StatsInterceptor(stats_, info->method() == nullptr ? "unknown" : info->method());
  }

 private:
  RpcStats* stats_;
};

}  // namespace

void RpcStats::Record(const std::string& method, int code, uint64_t latency_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.requests[{method, code}];
  stats_.latency[method].Add(latency_ns);
}

RpcStats::Snapshot RpcStats::Read() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
RpcStats::InterceptorFactory() {
  return std::make_unique<StatsInterceptorFactory>(this);
}

}  // namespace mk::server
