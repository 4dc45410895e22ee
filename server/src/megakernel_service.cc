#include "megakernel_service.h"

#include <grpcpp/alarm.h>

#include <algorithm>
#include <mutex>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "convert.h"
#include "status_mapping.h"
#include "stream_reactor.h"

namespace mk::server {

namespace {

absl::Time RpcDeadline(const grpc::CallbackServerContext& context) {
  return absl::FromChrono(context.deadline());
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// Answers RESOURCE_EXHAUSTED with gRPC's retry pushback (grpc-retry-pushback-ms, which gRPC's
// own retry policy honours) next to RetryInfo in the details, and the older retry-after-ms.
grpc::Status Reject(grpc::CallbackServerContext* context, const absl::Status& status) {
  if (absl::IsResourceExhausted(status)) {
    const std::string ms = std::to_string(
        std::max<int64_t>(1, absl::ToInt64Milliseconds(RetryDelayFor(status.code()))));
    context->AddTrailingMetadata("grpc-retry-pushback-ms", ms);
    context->AddTrailingMetadata("retry-after-ms", ms);
  }
  return ToGrpcStatus(status);
}

// An engine wait that a cancellation can end early: End before Started is remembered and ends
// the wait as soon as it has an id. Thread-safe (OnCancel runs on any gRPC thread).
class CancellableWait {
 public:
  // Engine::WaitForAsync; its error (the wait never started, `done` never runs) is returned.
  absl::Status Start(engine::Engine* engine, uint32_t tenant, absl::Span<const uint64_t> tickets,
                     absl::Time deadline, engine::Engine::CompletionsCallback done) {
    auto id = engine->WaitForAsync(tenant, tickets, deadline, std::move(done));
    if (!id.ok()) return id.status();
    Started(engine, *id);
    return absl::OkStatus();
  }
  void End(engine::Engine* engine) {
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = true;
    if (id_.has_value()) engine->EndWait(*id_);
  }

 private:
  void Started(engine::Engine* engine, engine::Engine::WaitId id) {
    std::lock_guard<std::mutex> lock(mu_);
    id_ = id;
    if (ended_) engine->EndWait(id);
  }

  std::mutex mu_;
  std::optional<engine::Engine::WaitId> id_;  // guarded by mu_
  bool ended_ = false;                        // guarded by mu_
};

// Publish with `wait`: collects the batch's completions without blocking a gRPC thread.
// Finishes OK with what completed by the wait; at the RPC deadline or on client cancellation it
// cancels the slots no worker has claimed yet and finishes DEADLINE_EXCEEDED / CANCELLED.
class PublishWaitReactor final : public grpc::ServerUnaryReactor {
 public:
  PublishWaitReactor(engine::Engine* engine, grpc::CallbackServerContext* context, uint32_t tenant,
                     const engine::PublishResult& published, absl::Duration wait,
                     v1::PublishResponse* response)
      : engine_(engine), tenant_(tenant), response_(response) {
    for (uint32_t i = 0; i < published.count; ++i) tickets_.push_back(published.first_ticket + i);
    const absl::Time rpc_deadline = RpcDeadline(*context);
    const absl::Time wait_until = absl::Now() + wait;
    hit_rpc_deadline_ = rpc_deadline <= wait_until;
    absl::Status s =
        wait_.Start(engine_, tenant_, tickets_, std::min(wait_until, rpc_deadline),
                    [this](std::vector<engine::Completion> got) { OnCompletions(std::move(got)); });
    if (!s.ok()) Finish(ToGrpcStatus(s));
  }

  void OnCancel() override {
    cancelled_ = true;
    CancelUnclaimed();
    wait_.End(engine_);  // claimed slots may run long: the wait ends now, not at its deadline
  }
  void OnDone() override { delete this; }

 private:
  void OnCompletions(std::vector<engine::Completion> got) {
    const bool complete = got.size() == tickets_.size();
    if (cancelled_ || (!complete && hit_rpc_deadline_)) {
      // The client will not see this response: keep the outcomes pollable, cancel the rest.
      engine_->ReturnCompletions(got);
      CancelUnclaimed();
      Finish(cancelled_
                 ? grpc::Status(grpc::StatusCode::CANCELLED,
                                "publish: the client cancelled; unclaimed slots were "
                                "cancelled, outcomes stay pollable")
                 : grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                absl::StrCat("publish: deadline passed with ",
                                             tickets_.size() - got.size(), " of ", tickets_.size(),
                                             " slots incomplete; unclaimed ones were "
                                             "cancelled, outcomes stay pollable")));
      return;
    }
    std::sort(got.begin(), got.end(),
              [](const auto& a, const auto& b) { return a.ticket < b.ticket; });
    for (const engine::Completion& c : got) ToProto(c, response_->add_completions());
    Finish(grpc::Status::OK);  // possibly partial: the rest stay pollable
  }
  void CancelUnclaimed() { engine_->Cancel(tenant_, tickets_).IgnoreError(); }

  engine::Engine* engine_;
  const uint32_t tenant_;
  v1::PublishResponse* response_;
  std::vector<uint64_t> tickets_;
  bool hit_rpc_deadline_ = false;
  std::atomic<bool> cancelled_{false};
  CancellableWait wait_;
};

// Poll: waits for the tickets without blocking a gRPC thread. On client cancellation (or a
// server shutdown, which cancels calls) the wait ends at once and what it collected goes back
// to the engine, so a later Poll still finds it.
class PollReactor final : public grpc::ServerUnaryReactor {
 public:
  PollReactor(engine::Engine* engine, uint32_t tenant, const std::vector<uint64_t>& tickets,
              absl::Time deadline, v1::PollResponse* response)
      : engine_(engine), response_(response) {
    absl::Status s =
        wait_.Start(engine_, tenant, tickets, deadline,
                    [this](std::vector<engine::Completion> got) { OnCompletions(std::move(got)); });
    if (!s.ok()) Finish(ToGrpcStatus(s));
  }
  void OnCancel() override {
    cancelled_ = true;
    wait_.End(engine_);
  }
  void OnDone() override { delete this; }

 private:
  void OnCompletions(std::vector<engine::Completion> got) {
    if (cancelled_) {
      engine_->ReturnCompletions(got);  // the client will not see them: keep them pollable
      Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                          "poll: cancelled; collected outcomes stay pollable"));
      return;
    }
    std::sort(got.begin(), got.end(),
              [](const auto& a, const auto& b) { return a.ticket < b.ticket; });
    for (const engine::Completion& c : got) ToProto(c, response_->add_completions());
    Finish(grpc::Status::OK);
  }

  engine::Engine* engine_;
  v1::PollResponse* response_;
  std::atomic<bool> cancelled_{false};
  CancellableWait wait_;
};

}  // namespace

// Periodic telemetry on a server stream. One write in flight at a time; a grpc::Alarm spaces
// the snapshots. The reactor deletes itself in OnDone, after Finish, once no alarm is pending.
// It is registered with the service while it lives, so a drain can end it (End).
class WatchTelemetryReactor final : public grpc::ServerWriteReactor<v1::Telemetry> {
 public:
  WatchTelemetryReactor(MegakernelService* service, absl::Duration interval,
                        std::unique_ptr<TenantLimiter::Lease> lease)
      : service_(service), interval_(interval), lease_(std::move(lease)) {
    if (!service_->AddWatcher(this)) {
      registered_ = false;
      std::lock_guard<std::mutex> lock(mu_);
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "watch: the server is draining; connect to another replica"));
      return;
    }
    WriteNext();
  }
  // The drain began: finish (OK) now, or once the write in flight is done.
  void End() { OnCancel(); }
  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ok || done_) return FinishLocked(grpc::Status::OK);
    alarm_pending_ = true;
    alarm_.Set(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(interval_),
               [this](bool fired) {
                 {
                   std::lock_guard<std::mutex> lock(mu_);
                   alarm_pending_ = false;
                   if (!fired || done_) return FinishLocked(grpc::Status::OK);
                 }
                 WriteNext();
               });
  }
  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    if (alarm_pending_) alarm_.Cancel();  // its callback then finishes
  }
  void OnDone() override {
    if (registered_) service_->RemoveWatcher(this);
    delete this;
  }

 private:
  void WriteNext() {
    absl::Status s = service_->Snapshot(v1::TelemetryRequest(), &snapshot_);
    std::lock_guard<std::mutex> lock(mu_);
    if (!s.ok()) return FinishLocked(ToGrpcStatus(s));
    StartWrite(&snapshot_);
  }
  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  MegakernelService* service_;
  const absl::Duration interval_;
  grpc::Alarm alarm_;
  v1::Telemetry snapshot_;
  std::mutex mu_;
  bool alarm_pending_ = false;                         // guarded by mu_
  bool done_ = false;                                  // guarded by mu_
  bool finished_ = false;                              // guarded by mu_
  bool registered_ = true;                             // set once, in the constructor
  const std::unique_ptr<TenantLimiter::Lease> lease_;  // the caller's place among its streams
};

grpc::ServerUnaryReactor* Finished(grpc::CallbackServerContext* context, const grpc::Status& s) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(s);
  return reactor;
}

grpc::ServerUnaryReactor* MegakernelService::Publish(grpc::CallbackServerContext* context,
                                                     const v1::PublishRequest* request,
                                                     v1::PublishResponse* response) {
  absl::StatusOr<Caller> caller = tenants_->AuthenticateTenant(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  auto slots = DecodePublish(*request);
  if (!slots.ok()) return Finished(context, ToGrpcStatus(slots.status()));
  auto published = engine_->Publish(caller->tenant, *slots, {});
  if (!published.ok()) return Finished(context, Reject(context, published.status()));
  response->set_first_ticket(published->first_ticket);
  response->set_count(published->count);
  const absl::Duration wait = FromProto(request->wait());
  if (wait <= absl::ZeroDuration()) return Finished(context, grpc::Status::OK);
  return new PublishWaitReactor(engine_, context, caller->tenant, *published, wait, response);
}

grpc::ServerUnaryReactor* MegakernelService::Poll(grpc::CallbackServerContext* context,
                                                  const v1::PollRequest* request,
                                                  v1::PollResponse* response) {
  absl::StatusOr<Caller> caller = tenants_->AuthenticateTenant(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  if (request->tickets().empty()) {
    return Finished(context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                          "poll: no tickets; pass the tickets Publish returned"));
  }
  const absl::Duration wait = FromProto(request->wait());
  if (wait < absl::ZeroDuration()) {
    return Finished(context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                          absl::StrCat("poll: wait ", absl::FormatDuration(wait),
                                                       " is negative; pass 0 to return at once")));
  }
  const std::vector<uint64_t> tickets(request->tickets().begin(), request->tickets().end());
  absl::flat_hash_set<uint64_t> seen;
  for (size_t i = 0; i < tickets.size(); ++i) {
    if (!seen.insert(tickets[i]).second) {
      return Finished(
          context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                absl::StrCat("poll: ticket ", tickets[i], " appears twice (index ",
                                             i, "); list each ticket once")));
    }
  }
  const absl::Time deadline = std::min(absl::Now() + wait, RpcDeadline(*context));
  return new PollReactor(engine_, caller->tenant, tickets, deadline, response);
}

grpc::ServerBidiReactor<v1::PublishRequest, v1::CompletionBatch>* MegakernelService::Stream(
    grpc::CallbackServerContext* context) {
  absl::StatusOr<Caller> caller = tenants_->AuthenticateTenant(*context);
  std::unique_ptr<TenantLimiter::Lease> lease;
  if (caller.ok()) {
    auto acquired = streams_.Acquire(caller->tenant);
    if (!acquired.ok()) caller = acquired.status();
    if (acquired.ok()) lease = *std::move(acquired);
  }
  return StreamReactor::Start(engine_, caller, stream_max_pending_, std::move(lease));
}

absl::Status MegakernelService::Snapshot(const v1::TelemetryRequest& request, v1::Telemetry* out) {
  engine::TelemetrySnapshot t;
  const std::vector<uint32_t> windows(request.window_opcodes().begin(),
                                      request.window_opcodes().end());
  if (absl::Status s = engine_->Telemetry(windows, &t); !s.ok()) return s;
  engine::WatchdogReport watchdog;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    watchdog = engine::EvaluateWatchdog(last_control_, t.control, t.occupancy);
    last_control_ = t.control;
  }
  ToProto(t, watchdog, engine_->info(), out);
  return absl::OkStatus();
}

void MegakernelService::EndWatchStreams() {
  std::lock_guard<std::mutex> lock(watchers_mu_);
  watch_streams_ended_ = true;
  for (WatchTelemetryReactor* w : watchers_) w->End();
}

bool MegakernelService::AddWatcher(WatchTelemetryReactor* watcher) {
  std::lock_guard<std::mutex> lock(watchers_mu_);
  if (watch_streams_ended_) return false;
  watchers_.insert(watcher);
  return true;
}

void MegakernelService::RemoveWatcher(WatchTelemetryReactor* watcher) {
  std::lock_guard<std::mutex> lock(watchers_mu_);
  watchers_.erase(watcher);
}

grpc::ServerUnaryReactor* MegakernelService::GetTelemetry(grpc::CallbackServerContext* context,
                                                          const v1::TelemetryRequest* request,
                                                          v1::Telemetry* response) {
  absl::StatusOr<Caller> caller = tenants_->Authenticate(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  return Finished(context, ToGrpcStatus(Snapshot(*request, response)));
}

grpc::ServerWriteReactor<v1::Telemetry>* MegakernelService::WatchTelemetry(
    grpc::CallbackServerContext* context, const v1::WatchTelemetryRequest* request) {
  absl::StatusOr<Caller> caller = tenants_->Authenticate(*context);
  absl::Duration interval = FromProto(request->interval());
  std::unique_ptr<TenantLimiter::Lease> lease;
  if (caller.ok()) {  // the admin credential counts as one more "tenant" for the limit
    auto acquired =
        streams_.Acquire(caller->is_tenant ? caller->tenant : engine::kSharedResourceOwner);
    if (!acquired.ok()) caller = acquired.status();
    if (acquired.ok()) lease = *std::move(acquired);
  }
  if (!caller.ok() || interval < absl::Milliseconds(10)) {
    struct Rejected final : grpc::ServerWriteReactor<v1::Telemetry> {
      explicit Rejected(const grpc::Status& s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    return new Rejected(!caller.ok() ? ToGrpcStatus(caller.status())
                                     : grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                                    "watch: interval must be at least 10ms"));
  }
  return new WatchTelemetryReactor(this, interval, std::move(lease));
}

grpc::ServerUnaryReactor* MegakernelService::RegisterResource(
    grpc::CallbackServerContext* context, const v1::RegisterResourceRequest* request,
    v1::RegisterResourceResponse* response) {
  // Shared resources (files under <root>/shared/, usable by every tenant) are the admin's.
  absl::StatusOr<Caller> caller = request->shared() ? tenants_->AuthenticateAdmin(*context)
                                                    : tenants_->AuthenticateTenant(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  const uint32_t owner = request->shared() ? engine::kSharedResourceOwner : caller->tenant;
  auto id = engine_->RegisterResource(owner, request->path(), request->offset(), request->length());
  if (id.ok()) response->set_resource_id(*id);
  return Finished(context, ToGrpcStatus(id.status()));
}

grpc::ServerUnaryReactor* MegakernelService::ListResources(grpc::CallbackServerContext* context,
                                                           const v1::ListResourcesRequest*,
                                                           v1::ListResourcesResponse* response) {
  absl::StatusOr<Caller> caller = tenants_->Authenticate(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  // A tenant sees its own resources and the shared ones; the admin credential the shared ones.
  auto listed =
      engine_->ListResources(caller->is_tenant ? caller->tenant : engine::kSharedResourceOwner);
  if (listed.ok()) {
    for (const engine::ResourceInfo& r : *listed) {
      v1::Resource* out = response->add_resources();
      out->set_resource_id(r.id);
      out->set_path(r.path);
      out->set_offset(r.offset);
      out->set_length(r.length);
      out->set_resident(r.resident);
      out->set_shared(r.tenant == engine::kSharedResourceOwner);
    }
  }
  return Finished(context, ToGrpcStatus(listed.status()));
}

grpc::ServerUnaryReactor* MegakernelService::EvictResource(grpc::CallbackServerContext* context,
                                                           const v1::EvictResourceRequest* request,
                                                           v1::EvictResourceResponse*) {
  absl::StatusOr<Caller> caller = request->shared() ? tenants_->AuthenticateAdmin(*context)
                                                    : tenants_->AuthenticateTenant(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  const uint32_t owner = request->shared() ? engine::kSharedResourceOwner : caller->tenant;
  return Finished(context, ToGrpcStatus(engine_->EvictResource(owner, request->resource_id())));
}

}  // namespace mk::server
