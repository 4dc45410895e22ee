// mk.v1.Megakernel on the gRPC callback API. No reaction blocks: waits go through
// Engine::WaitForAsync and finish the RPC from the engine's thread.
#ifndef MK_SERVER_SRC_MEGAKERNEL_SERVICE_H_
#define MK_SERVER_SRC_MEGAKERNEL_SERVICE_H_

#include <atomic>
#include <mutex>

#include "absl/container/flat_hash_set.h"
#include "auth.h"
#include "mk/engine/engine.h"
#include "mk/v1/megakernel.grpc.pb.h"
#include "tenant_limiter.h"

namespace mk::server {

class MegakernelService final : public v1::Megakernel::CallbackService {
 public:
  MegakernelService(engine::Engine* engine, const TenantDirectory* tenants,
                    uint32_t max_streams_per_tenant, size_t stream_max_pending)
      : engine_(engine),
        tenants_(tenants),
        stream_max_pending_(stream_max_pending),
        streams_(max_streams_per_tenant, "streams (Stream and WatchTelemetry)",
                 "--max_streams_per_tenant"),
        transfers_(max_streams_per_tenant, "buffer transfers (WriteBuffer and ReadBuffer)",
                   "--max_streams_per_tenant") {}

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* context,
                                    const v1::PublishRequest* request,
                                    v1::PublishResponse* response) override;
  grpc::ServerUnaryReactor* Poll(grpc::CallbackServerContext* context,
                                 const v1::PollRequest* request,
                                 v1::PollResponse* response) override;
  grpc::ServerBidiReactor<v1::PublishRequest, v1::CompletionBatch>* Stream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* GetTelemetry(grpc::CallbackServerContext* context,
                                         const v1::TelemetryRequest* request,
                                         v1::Telemetry* response) override;
  grpc::ServerWriteReactor<v1::Telemetry>* WatchTelemetry(
      grpc::CallbackServerContext* context, const v1::WatchTelemetryRequest* request) override;
  grpc::ServerUnaryReactor* RegisterResource(grpc::CallbackServerContext* context,
                                             const v1::RegisterResourceRequest* request,
                                             v1::RegisterResourceResponse* response) override;
  grpc::ServerUnaryReactor* ListResources(grpc::CallbackServerContext* context,
                                          const v1::ListResourcesRequest* request,
                                          v1::ListResourcesResponse* response) override;
  grpc::ServerUnaryReactor* EvictResource(grpc::CallbackServerContext* context,
                                          const v1::EvictResourceRequest* request,
                                          v1::EvictResourceResponse* response) override;

  // Tenant buffers (buffer_service.cc).
  grpc::ServerUnaryReactor* CreateBuffer(grpc::CallbackServerContext* context,
                                         const v1::CreateBufferRequest* request,
                                         v1::CreateBufferResponse* response) override;
  grpc::ServerReadReactor<v1::WriteBufferChunk>* WriteBuffer(
      grpc::CallbackServerContext* context, v1::WriteBufferResponse* response) override;
  grpc::ServerWriteReactor<v1::BufferData>* ReadBuffer(
      grpc::CallbackServerContext* context, const v1::ReadBufferRequest* request) override;
  grpc::ServerUnaryReactor* FreeBuffer(grpc::CallbackServerContext* context,
                                       const v1::FreeBufferRequest* request,
                                       v1::FreeBufferResponse* response) override;
  grpc::ServerUnaryReactor* ListBuffers(grpc::CallbackServerContext* context,
                                        const v1::ListBuffersRequest* request,
                                        v1::ListBuffersResponse* response) override;

  // Fills `out` with a telemetry snapshot; the watchdog compares with the previous call.
  absl::Status Snapshot(const v1::TelemetryRequest& request, v1::Telemetry* out);

  // A drain began: every WatchTelemetry stream finishes now (OK) instead of holding the drain
  // until its deadline, and new ones are refused (UNAVAILABLE).
  void EndWatchStreams();
  // WatchTelemetry reactors register while they live (called by the reactors).
  bool AddWatcher(class WatchTelemetryReactor* watcher);
  void RemoveWatcher(class WatchTelemetryReactor* watcher);

 private:
  engine::Engine* engine_;
  const TenantDirectory* tenants_;
  const size_t stream_max_pending_;
  TenantLimiter streams_;    // open Stream and WatchTelemetry calls per tenant
  TenantLimiter transfers_;  // open WriteBuffer and ReadBuffer calls per tenant
  std::mutex snapshot_mu_;
  engine::ControlSnapshot last_control_;  // guarded by snapshot_mu_
  std::mutex watchers_mu_;
  absl::flat_hash_set<WatchTelemetryReactor*> watchers_;  // guarded by watchers_mu_
  bool watch_streams_ended_ = false;                      // guarded by watchers_mu_
};

// Finishes a unary call at once with `s` (the context's default reactor).
grpc::ServerUnaryReactor* Finished(grpc::CallbackServerContext* context, const grpc::Status& s);

}  // namespace mk::server

#endif  // MK_SERVER_SRC_MEGAKERNEL_SERVICE_H_
