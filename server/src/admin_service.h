// mk.v1.Admin (needs the admin credential) and mk.v1.Diagnostics (echo baselines).
#ifndef MK_SERVER_SRC_ADMIN_SERVICE_H_
#define MK_SERVER_SRC_ADMIN_SERVICE_H_

#include <functional>

#include "auth.h"
#include "mk/engine/engine.h"
#include "mk/v1/megakernel.grpc.pb.h"

namespace mk::server {

class AdminService final : public v1::Admin::CallbackService {
 public:
  // `drain` runs a drain off the gRPC threads and calls back with the result; `shutdown`
  // hands Admin.Shutdown to the server's owner.
  using DrainFn = std::function<void(std::function<void(absl::StatusOr<engine::EngineCounters>)>)>;
  AdminService(engine::Engine* engine, const TenantDirectory* tenants, DrainFn drain,
               std::function<void(bool)> shutdown)
      : engine_(engine),
        tenants_(tenants),
        drain_(std::move(drain)),
        shutdown_(std::move(shutdown)) {}

  grpc::ServerUnaryReactor* SetTenantEnabled(grpc::CallbackServerContext* context,
                                             const v1::SetTenantEnabledRequest* request,
                                             v1::SetTenantEnabledResponse* response) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context,
                                  const v1::DrainRequest* request,
                                  v1::DrainResponse* response) override;
  grpc::ServerUnaryReactor* Shutdown(grpc::CallbackServerContext* context,
                                     const v1::ShutdownRequest* request,
                                     v1::ShutdownResponse* response) override;

 private:
  engine::Engine* engine_;
  const TenantDirectory* tenants_;
  DrainFn drain_;
  std::function<void(bool)> shutdown_;
};

// Echo needs a valid token (tenant or admin) like every service but health and reflection.
class DiagnosticsService final : public v1::Diagnostics::CallbackService {
 public:
  explicit DiagnosticsService(const TenantDirectory* tenants) : tenants_(tenants) {}
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const v1::EchoRequest* request,
                                 v1::EchoResponse* response) override;
  grpc::ServerBidiReactor<v1::EchoRequest, v1::EchoResponse>* EchoStream(
      grpc::CallbackServerContext* context) override;

 private:
  const TenantDirectory* const tenants_;  // not owned; outlives the service
};

}  // namespace mk::server

#endif  // MK_SERVER_SRC_ADMIN_SERVICE_H_
