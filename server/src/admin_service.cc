#include "admin_service.h"

#include "status_mapping.h"

namespace mk::server {

namespace {
grpc::ServerUnaryReactor* Finished(grpc::CallbackServerContext* context, const grpc::Status& s) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(s);
  return reactor;
}
}  // namespace

grpc::ServerUnaryReactor* AdminService::SetTenantEnabled(grpc::CallbackServerContext* context,
                                                         const v1::SetTenantEnabledRequest* request,
                                                         v1::SetTenantEnabledResponse*) {
  auto caller = tenants_->AuthenticateAdmin(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  return Finished(context,
                  ToGrpcStatus(engine_->SetTenantEnabled(request->tenant(), request->enabled())));
}

grpc::ServerUnaryReactor* AdminService::Drain(grpc::CallbackServerContext* context,
                                              const v1::DrainRequest*,
                                              v1::DrainResponse* response) {
  auto caller = tenants_->AuthenticateAdmin(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  auto* reactor = context->DefaultReactor();
  drain_([reactor, response](absl::StatusOr<engine::EngineCounters> counters) {
    if (!counters.ok()) return reactor->Finish(ToGrpcStatus(counters.status()));
    response->set_accepted(counters->accepted);
    response->set_done(counters->done);
    response->set_faulted(counters->faulted);
    response->set_cancelled(counters->cancelled);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::Shutdown(grpc::CallbackServerContext* context,
                                                 const v1::ShutdownRequest* request,
                                                 v1::ShutdownResponse*) {
  auto caller = tenants_->AuthenticateAdmin(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  if (!shutdown_) {
    return Finished(context, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                          "admin: this server was started without a shutdown "
                                          "handler; stop it with SIGTERM"));
  }
  shutdown_(request->drain());
  return Finished(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* DiagnosticsService::Echo(grpc::CallbackServerContext* context,
                                                   const v1::EchoRequest* request,
                                                   v1::EchoResponse* response) {
  if (auto caller = tenants_->Authenticate(*context); !caller.ok()) {
    return Finished(context, ToGrpcStatus(caller.status()));
  }
  response->set_payload(request->payload());
  return Finished(context, grpc::Status::OK);
}

grpc::ServerBidiReactor<v1::EchoRequest, v1::EchoResponse>* DiagnosticsService::EchoStream(
    grpc::CallbackServerContext* context) {
  if (auto caller = tenants_->Authenticate(*context); !caller.ok()) {
    struct Rejected final : grpc::ServerBidiReactor<v1::EchoRequest, v1::EchoResponse> {
      explicit Rejected(const grpc::Status& s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    return new Rejected(ToGrpcStatus(caller.status()));
  }
  // Reads one message, writes it back, reads the next: at most one read and one write in flight.
  class Echoer final : public grpc::ServerBidiReactor<v1::EchoRequest, v1::EchoResponse> {
   public:
    Echoer() { StartRead(&in_); }
    void OnReadDone(bool ok) override {
      if (!ok) return Finish(grpc::Status::OK);
      out_.set_payload(std::move(*in_.mutable_payload()));
      StartWrite(&out_);
    }
    void OnWriteDone(bool ok) override {
      if (!ok) return Finish(grpc::Status::OK);
      StartRead(&in_);
    }
    void OnDone() override { delete this; }

   private:
    v1::EchoRequest in_;
    v1::EchoResponse out_;
  };
  return new Echoer();
}

}  // namespace mk::server
