#include "soak_session.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "soak_stream.h"
#include "soak_workload.h"

namespace mk::mkctl::soak {

namespace {
constexpr size_t kMaxExamples = 8;
constexpr absl::Duration kRpcMargin = absl::Seconds(30);

bool IsFault(Action a) { return a >= Action::kUnknownOpcode; }

// Errors after which the server may still have accepted the request.
bool MayHaveBeenAccepted(grpc::StatusCode code) {
  return code == grpc::StatusCode::CANCELLED || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::UNKNOWN ||
         code == grpc::StatusCode::INTERNAL;
}

// Refusals the soak provokes or expects of a server under faults: a disabled tenant, a full
// ring, a drain; and what each fault action must get.
bool ExpectedRefusal(Action action, grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::UNAVAILABLE:
      return true;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return action == Action::kUnknownOpcode;
    case grpc::StatusCode::CANCELLED:
      return action == Action::kCancelPublish || action == Action::kCancelPoll;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return action == Action::kExpireDeadline;
    default:
      return false;
  }
}
}  // namespace

const char* ActionName(Action a) {
  static constexpr const char* kNames[kActionCount] = {
      "publish_wait", "publish_nowait", "stream",          "resource",    "unknown_opcode",
      "bad_resource", "cancel_publish", "expire_deadline", "cancel_poll", "cancel_stream"};
  return kNames[static_cast<int>(a)];
}

void SessionReport::Add(const SessionReport& o) {
  issued += o.issued;
  shed += o.shed;
  publish_calls += o.publish_calls;
  for (const auto& [code, n] : o.rejected_by_code) rejected_by_code[code] += n;
  unexpected_rejections += o.unexpected_rejections;
  unknown_opcode_accepted += o.unknown_opcode_accepted;
  poll_errors += o.poll_errors;
  registrations_failed += o.registrations_failed;
  for (int i = 0; i < kActionCount; ++i) faults_injected[i] += o.faults_injected[i];
  for (const std::string& e : o.examples) {
    if (examples.size() < kMaxExamples) examples.push_back(e);
  }
}

// One asynchronous call: gRPC holds a reference through its callback, the cancel list another.
struct TenantSession::Call {
  std::unique_ptr<grpc::ClientContext> context;
  Action action = Action::kPublishWait;
  v1::PublishRequest request;
  v1::PublishResponse response;
  std::vector<SlotKind> kinds;
  uint64_t ledger_call = 0;
  v1::PollRequest poll_request;
  v1::PollResponse poll_response;
};

TenantSession::TenantSession(uint32_t tenant, std::unique_ptr<client::Client> client,
                             SessionOptions options, const std::atomic<bool>* server_gone,
                             std::function<void()> on_server_gone)
    : tenant_(tenant),
      client_(std::move(client)),
      options_(std::move(options)),
      server_gone_(server_gone),
      on_server_gone_(std::move(on_server_gone)),
      ledger_(tenant),
      resource_ids_(options_.resources.size(), 0) {}

TenantSession::~TenantSession() {
  Finish(absl::Now());
  // gRPC still holds callbacks of calls in flight (each has a deadline): wait for them, they
  // use this session.
  std::unique_lock<std::mutex> lock(mu_);
  progress_.wait(lock, [this] { return in_flight_.load() == 0; });
}

void TenantSession::Start() {
  RegisterResources();
  StreamLane::Hooks hooks;
  hooks.on_refused = [this](int code, bool expected_refusal) {
    if (code == 0) {  // accepted, though it held an unknown opcode
      std::lock_guard<std::mutex> lock(mu_);
      ++report_.unknown_opcode_accepted;
      return;
    }
    Reject(expected_refusal ? Action::kUnknownOpcode : Action::kStream,
           grpc::Status(static_cast<grpc::StatusCode>(code), "stream ack"));
  };
  hooks.on_progress = [this] { NotifyProgress(); };
  hooks.on_broken = [this] {
    if (!stopping_.load()) on_server_gone_();
  };
  stream_ = std::make_unique<StreamLane>(client_.get(), &ledger_, options_.packed_stream,
                                         /*track_acks=*/false, std::move(hooks));
  poller_ = std::thread([this] { PollerLoop(); });
  fault_thread_ = std::thread([this] { FaultLoop(); });
}

void TenantSession::Note(const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (report_.examples.size() < kMaxExamples) {
    report_.examples.push_back(absl::StrCat("tenant ", tenant_, ": ", what));
  }
}

void TenantSession::NotifyProgress() {
  std::lock_guard<std::mutex> lock(mu_);
  progress_.notify_all();
}

void TenantSession::CallEnded() {
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_.fetch_sub(1);
  progress_.notify_all();
}

void TenantSession::Reject(Action action, const grpc::Status& status) {
  const grpc::StatusCode code = status.error_code();
  // A server going away cancels the calls it has not answered.
  const bool leaving = code == grpc::StatusCode::CANCELLED && server_gone_->load();
  const bool expected = leaving || ExpectedRefusal(action, code);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++report_.rejected_by_code[static_cast<int>(code)];
    if (!expected) ++report_.unexpected_rejections;
  }
  if (!expected) {
    Note(absl::StrCat(ActionName(action), " refused: ", static_cast<int>(code), " ",
                      status.error_message()));
  }
  if (code == grpc::StatusCode::UNAVAILABLE && !stopping_.load()) on_server_gone_();
}

bool TenantSession::CallOnce(std::mt19937_64& rng, uint32_t* slots) {
  Batch b = ValidBatch(rng, 1 + rng() % 8, /*checked=*/true, kPriorityNormal, 0);
  *slots = static_cast<uint32_t>(b.slots.size());
  const v1::PublishRequest request = ToRequest(b.slots, false, options_.publish_wait);
  v1::PublishResponse response;
  const uint64_t call = ledger_.BeginCall();
  const grpc::Status s = client_->megakernel()->Publish(
      client_->NewContext(options_.publish_wait + kRpcMargin).get(), request, &response);
  if (s.ok()) {
    std::vector<client::Completion> got;
    for (const v1::Completion& c : response.completions()) got.push_back(client::FromProto(c));
    ledger_.Accepted(response.first_ticket(), b.kinds, /*pollable=*/true, got);
  } else {
    if (MayHaveBeenAccepted(s.error_code())) ledger_.MayHaveBeenAccepted(b.slots.size());
    Reject(Action::kPublishWait, s);
  }
  ledger_.EndCall(call);
  return s.ok();
}

void TenantSession::StartPublish(const std::vector<client::Slot>& slots,
                                 std::vector<SlotKind> kinds, absl::Duration wait, Action action,
                                 bool packed, bool mark_cancel, absl::Duration timeout) {
  if (in_flight_.load() >= options_.max_in_flight) {
    std::lock_guard<std::mutex> lock(mu_);
    ++report_.shed;
    return;
  }
  auto call = std::make_shared<Call>();
  call->context = client_->NewContext(timeout);
  call->action = action;
  call->request = ToRequest(slots, packed, wait);
  call->kinds = std::move(kinds);
  call->ledger_call = ledger_.BeginCall();
  in_flight_.fetch_add(1);
  if (mark_cancel) {
    std::lock_guard<std::mutex> lock(mu_);
    to_cancel_.push_back(call);
  }
  client_->megakernel()->async()->Publish(
      call->context.get(), &call->request, &call->response,
      [this, call](const grpc::Status& s) { OnPublishDone(call, s); });
}

void TenantSession::OnPublishDone(const std::shared_ptr<Call>& call, const grpc::Status& status) {
  if (status.ok()) {
    std::vector<SlotKind>& kinds = call->kinds;
    if (call->action == Action::kUnknownOpcode) {
      Note("a publish holding an unknown opcode was accepted");
      std::lock_guard<std::mutex> lock(mu_);
      ++report_.unknown_opcode_accepted;
    }
    if (call->response.count() != kinds.size()) {
      Note(absl::StrCat("publish of ", kinds.size(), " slots got ", call->response.count(),
                        " tickets"));
      kinds.resize(call->response.count(), SlotKind::kUnknown);
    }
    std::vector<client::Completion> got;
    got.reserve(call->response.completions_size());
    for (const v1::Completion& c : call->response.completions()) {
      got.push_back(client::FromProto(c));
    }
    ledger_.Accepted(call->response.first_ticket(), kinds, /*pollable=*/true, got);
  } else {
    if (MayHaveBeenAccepted(status.error_code())) ledger_.MayHaveBeenAccepted(call->kinds.size());
    Reject(call->action, status);
  }
  ledger_.EndCall(call->ledger_call);  // after Accepted: the gap watermark must not pass them
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++report_.publish_calls;
  }
  CallEnded();
}

void TenantSession::StartCancelledPoll() {
  const std::vector<uint64_t> tickets = ledger_.PollBatch(8);
  if (tickets.empty() || in_flight_.load() >= options_.max_in_flight) return;
  auto call = std::make_shared<Call>();
  call->context = client_->NewContext(absl::Seconds(1) + kRpcMargin);
  call->action = Action::kCancelPoll;
  call->poll_request.mutable_tickets()->Add(tickets.begin(), tickets.end());
  call->poll_request.mutable_wait()->set_seconds(1);
  in_flight_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    to_cancel_.push_back(call);
  }
  client_->megakernel()->async()->Poll(
      call->context.get(), &call->poll_request, &call->poll_response,
      [this, call](const grpc::Status& s) {
        if (s.ok()) {
          std::vector<client::Completion> got;
          for (const v1::Completion& c : call->poll_response.completions()) {
            got.push_back(client::FromProto(c));
          }
          ledger_.Record(got);
        } else {
          // The server may have answered as the cancel landed: those outcomes are given up
          // unless a later Poll finds them (the server hands back what it had not sent).
          const auto& t = call->poll_request.tickets();
          ledger_.AtRisk(std::vector<uint64_t>(t.begin(), t.end()));
          if (s.error_code() != grpc::StatusCode::CANCELLED &&
              s.error_code() != grpc::StatusCode::UNAVAILABLE &&
              s.error_code() != grpc::StatusCode::NOT_FOUND) {  // owed nothing: see PollOnce
            Note(absl::StrCat("cancelled poll ended ", static_cast<int>(s.error_code()), " ",
                              s.error_message()));
            std::lock_guard<std::mutex> lock(mu_);
            ++report_.poll_errors;
          }
        }
        CallEnded();
      });
}

void TenantSession::CancelMarked() {
  std::vector<std::shared_ptr<Call>> calls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls.swap(to_cancel_);
  }
  for (const auto& call : calls) call->context->TryCancel();
}

void TenantSession::Issue(Action action, std::mt19937_64& rng) {
  std::vector<uint32_t> ids;  // registered resources
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint32_t id : resource_ids_) {
      if (id != 0) ids.push_back(id);
    }
    // With no file registered (each is mid-fault), a resource request becomes a plain one.
    if (action == Action::kResource && ids.empty()) action = Action::kPublishWait;
    ++report_.issued;
    if (IsFault(action)) ++report_.faults_injected[static_cast<int>(action)];
  }
  const absl::Duration normal = options_.publish_wait + kRpcMargin;
  const bool packed = rng() % 4 == 0;
  switch (action) {
    case Action::kPublishWait:
    case Action::kPublishNoWait: {
      Batch b = ValidBatch(rng, 1 + rng() % 8, /*checked=*/true, kPriorityNormal, 3);
      const absl::Duration wait =
          action == Action::kPublishWait ? options_.publish_wait : absl::ZeroDuration();
      StartPublish(b.slots, std::move(b.kinds), wait, action, packed, false, normal);
      return;
    }
    case Action::kStream: {
      if (!stream_->Send(ValidBatch(rng, 1 + rng() % 16, true, kPriorityNormal, 3), false)) {
        std::lock_guard<std::mutex> lock(mu_);
        ++report_.shed;
      }
      return;
    }
    case Action::kResource: {
      Batch b = ResourceBatch(rng, ids[rng() % ids.size()]);
      const absl::Duration wait = rng() % 2 == 0 ? options_.publish_wait : absl::ZeroDuration();
      StartPublish(b.slots, std::move(b.kinds), wait, action, packed, false, normal);
      return;
    }
    case Action::kUnknownOpcode: {
      Batch b = ValidBatch(rng, 1 + rng() % 4, /*checked=*/false, kPriorityNormal, 0);
      b.Add(client::Slot{op::kUnregistered, kPriorityNormal, {}}, SlotKind::kUnknown);
      if (rng() % 2 == 0 && stream_->Send(b, /*expect_refusal=*/true)) return;
      StartPublish(b.slots, std::move(b.kinds), absl::ZeroDuration(), action, packed, false,
                   normal);
      return;
    }
    case Action::kBadResource: {
      Batch b = BadResourceBatch(rng);
      StartPublish(b.slots, std::move(b.kinds), options_.publish_wait, action, packed, false,
                   normal);
      return;
    }
    case Action::kCancelPublish:
    case Action::kExpireDeadline: {
      // Low priority and tens of slots, so some are still unclaimed when the call ends.
      Batch b = ValidBatch(rng, 16 + rng() % 48, /*checked=*/false, kPriorityIdle, 5);
      const bool cancel = action == Action::kCancelPublish;
      const absl::Duration timeout =
          cancel ? normal : absl::Microseconds(20 + static_cast<int64_t>(rng() % 480));
      StartPublish(b.slots, std::move(b.kinds), options_.publish_wait, action, packed, cancel,
                   timeout);
      return;
    }
    case Action::kCancelPoll:
      StartCancelledPoll();
      return;
    case Action::kCancelStream: {
      const uint64_t seed = rng();
      if (!RunOnFaultThread([this, seed] { CancelStreamJob(std::mt19937_64(seed)); })) {
        std::lock_guard<std::mutex> lock(mu_);  // the previous one is still running
        --report_.faults_injected[static_cast<int>(action)];
        ++report_.shed;
      }
      return;
    }
  }
}

void TenantSession::CancelStreamJob(std::mt19937_64 rng) {
  StreamLane::Hooks hooks;
  hooks.on_refused = [this](int code, bool) {
    Reject(Action::kCancelStream, grpc::Status(static_cast<grpc::StatusCode>(code), "ack"));
  };
  hooks.on_progress = [this] { NotifyProgress(); };
  hooks.on_broken = [] {};  // the session's own lane reports a server that went away
  StreamLane lane(client_.get(), &ledger_, /*packed=*/rng() % 2 == 0, /*track_acks=*/true,
                  std::move(hooks));
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_stream_ = &lane;
  }
  for (int i = 0; i < 2; ++i) {
    lane.Send(ValidBatch(rng, 16 + rng() % 48, /*checked=*/false, kPriorityIdle, 5), false);
  }
  // Acknowledged first, so every ticket it got is known; then cancelled with work in flight.
  // (A disabled tenant's requests are acknowledged once it is enabled again or the server
  // drains; Finish aborts the stream if it comes to that.)
  lane.WaitAcked(absl::InfiniteFuture());
  const std::vector<uint64_t> acked = lane.Cancel();
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_stream_ = nullptr;
  }
  ledger_.Abandon(acked);
  NotifyProgress();
}

bool TenantSession::RunOnFaultThread(std::function<void()> job) {
  std::lock_guard<std::mutex> lock(mu_);
  if (fault_busy_ || fault_stop_ || !fault_jobs_.empty()) return false;
  fault_jobs_.push_back(std::move(job));
  progress_.notify_all();
  return true;
}

void TenantSession::FaultLoop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      fault_busy_ = false;
      progress_.notify_all();
      progress_.wait(lock, [this] { return fault_stop_ || !fault_jobs_.empty(); });
      if (fault_jobs_.empty()) return;
      job = std::move(fault_jobs_.front());
      fault_jobs_.pop_front();
      fault_busy_ = true;
    }
    job();
  }
}

void TenantSession::Maintain() {
  bool missing = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint32_t id : resource_ids_) missing |= id == 0;
  }
  if (missing) RunOnFaultThread([this] { RegisterResources(); });
}

void TenantSession::RegisterResources() {
  for (size_t i = 0; i < options_.resources.size(); ++i) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (resource_ids_[i] != 0) continue;
    }
    v1::RegisterResourceRequest request;
    request.set_path(options_.resources[i]);
    v1::RegisterResourceResponse response;
    const grpc::Status s = client_->megakernel()->RegisterResource(
        client_->NewContext(absl::Seconds(10)).get(), request, &response);
    std::lock_guard<std::mutex> lock(mu_);
    if (s.ok()) {
      resource_ids_[i] = response.resource_id();
    } else {
      ++report_.registrations_failed;  // the driver has the file mid-fault: retried later
    }
  }
}

SessionReport TenantSession::Report() const {
  std::lock_guard<std::mutex> lock(mu_);
  return report_;
}

}  // namespace mk::mkctl::soak
