// gRPC request statistics (by method and status code, latency per method), recorded by a server
// interceptor and read by the metrics collector at scrape time.
#ifndef MK_SERVER_SRC_RPC_STATS_H_
#define MK_SERVER_SRC_RPC_STATS_H_

#include <grpcpp/support/server_interceptor.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "mk/engine/engine_stats.h"

namespace mk::server {

class RpcStats {
 public:
  void Record(const std::string& method, int code, uint64_t latency_ns);

  struct Snapshot {
    std::map<std::pair<std::string, int>, uint64_t> requests;  // (method, code) -> count
    std::map<std::string, engine::LatencyHistogram> latency;   // method -> histogram
  };
  Snapshot Read() const;

  // The interceptor factory to install on the ServerBuilder; it records into this object,
  // which must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

 private:
  mutable std::mutex mu_;
  Snapshot stats_;  // guarded by mu_
};

}  // namespace mk::server

#endif  // MK_SERVER_SRC_RPC_STATS_H_
