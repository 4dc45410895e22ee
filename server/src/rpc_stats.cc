#include "rpc_stats.h"

#include <google/protobuf/descriptor.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

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

// The method's label: its full name when the server defines it, "unknown" for anything a
// caller made up (a label value per made-up name would let anyone grow /metrics without bound).
std::string MethodLabel(const char* method) {
  if (method == nullptr) return "unknown";
  absl::string_view name(method);
  static constexpr absl::string_view kOutsideThePool[] = {
      "/grpc.health.v1.Health/Check",
      "/grpc.health.v1.Health/Watch",
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  };
  for (absl::string_view known : kOutsideThePool) {
    if (name == known) return std::string{name};
  }
  // "/pkg.Service/Method" is known when the linked protos define pkg.Service.Method.
  if (!absl::ConsumePrefix(&name, "/")) return "unknown";
  const size_t slash = name.find('/');
  if (slash == absl::string_view::npos) return "unknown";
  const std::string full = absl::StrCat(name.substr(0, slash), ".", name.substr(slash + 1));
  if (google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(full) == nullptr) {
    return "unknown";
  }
  return method;
}

class StatsInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit StatsInterceptorFactory(RpcStats* stats) : stats_(stats) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new StatsInterceptor(stats_, MethodLabel(info->method()));
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
