#include "mk/client/client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "mk/proto/packed_codec.h"

namespace mk::client {

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("client: cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out->set_seconds(ns / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
}

PublishResult FromProto(const v1::PublishResponse& r) {
  PublishResult out{r.first_ticket(), r.count(), {}};
  for (const auto& c : r.completions()) out.completions.push_back(client::FromProto(c));
  return out;
}

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

Completion FromProto(const v1::Completion& c) {
  Completion out;
  out.ticket = c.ticket();
  switch (c.status()) {
    case v1::COMPLETION_STATUS_FAULT:
      out.status = Completion::Status::kFault;
      break;
    case v1::COMPLETION_STATUS_CANCELLED:
      out.status = Completion::Status::kCancelled;
      break;
    default:
      out.status = Completion::Status::kDone;
      break;
  }
  out.results.assign(c.result().begin(), c.result().end());
  out.fault_code = c.fault_code();
  out.fault_detail = c.fault_detail();
  return out;
}

absl::StatusOr<std::vector<Completion>> DecodePackedCompletions(const std::string& packed) {
  if (absl::Status s = proto::CheckPackedSize(packed.size(), "packed_completions", "completions");
      !s.ok()) {
    return absl::DataLossError(s.message());
  }
  std::vector<Completion> out(packed.size() / proto::kPackedBytes);
  for (size_t i = 0; i < out.size(); ++i) {
    auto decoded = proto::DecodePackedCompletion(packed.data() + i * proto::kPackedBytes, i);
    if (!decoded.ok()) return decoded.status();
    Completion& c = out[i];
    c.ticket = decoded->ticket;
    switch (decoded->status) {
      case proto::PackedStatus::kDone:
        c.status = Completion::Status::kDone;
        c.results.assign(decoded->words.begin(), decoded->words.end());
        break;
      case proto::PackedStatus::kFault:
        c.status = Completion::Status::kFault;
        c.fault_code = decoded->words[0];
        c.fault_detail = decoded->words[1];
        break;
      case proto::PackedStatus::kCancelled:
        c.status = Completion::Status::kCancelled;
        break;
    }
  }
  return out;
}

std::string EncodePacked(absl::Span<const Slot> slots) {
  std::string out(slots.size() * proto::kPackedBytes, '\0');
  for (size_t i = 0; i < slots.size(); ++i) {
    proto::PackedSlot packed;
    packed.opcode = slots[i].opcode;
    packed.priority = slots[i].priority;
    // Words past the 12th do not fit a slot; the typed path rejects them, the packed one drops.
    std::copy_n(slots[i].args.begin(), std::min(slots[i].args.size(), packed.args.size()),
                packed.args.begin());
    proto::EncodePackedSlot(packed, out.data() + i * proto::kPackedBytes);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    auto ca = ReadFile(options.tls_ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    if (!options.tls_cert_file.empty()) {
      auto cert = ReadFile(options.tls_cert_file);
      if (!cert.ok()) return cert.status();
      auto key = ReadFile(options.tls_key_file);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  auto channel = grpc::CreateCustomChannel(options.target, credentials, args);
  return std::unique_ptr<Client>(new Client(options, std::move(channel)));
}

Client::Client(const ClientOptions& options, std::shared_ptr<grpc::Channel> channel)
    : options_(options),
      channel_(std::move(channel)),
      megakernel_(v1::Megakernel::NewStub(channel_)),
      admin_(v1::Admin::NewStub(channel_)),
      diagnostics_(v1::Diagnostics::NewStub(channel_)) {}

std::unique_ptr<grpc::ClientContext> Client::NewContext(absl::Duration timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  if (timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  return context;
}

absl::StatusOr<PublishResult> Client::PublishRequest(const v1::PublishRequest& request) {
  v1::PublishResponse response;
  const absl::Duration wait =
      absl::Seconds(request.wait().seconds()) + absl::Nanoseconds(request.wait().nanos());
  grpc::Status s = WithRetries([&] {
    response.Clear();
    return megakernel_->Publish(NewContext(options_.rpc_timeout + wait).get(), request, &response);
  });
  if (!s.ok()) return FromGrpcStatus(s);
  return FromProto(response);
}

absl::StatusOr<PublishResult> Client::Publish(absl::Span<const Slot> slots, absl::Duration wait) {
  v1::PublishRequest request;
  for (const Slot& s : slots) {
    v1::Slot* out = request.mutable_slots()->add_slots();
    out->set_opcode(s.opcode);
    out->set_priority(s.priority);
    out->mutable_args()->Add(s.args.begin(), s.args.end());
  }
  if (wait > absl::ZeroDuration()) SetDuration(wait, request.mutable_wait());
  return PublishRequest(request);
}

absl::StatusOr<PublishResult> Client::PublishPacked(const std::string& packed,
                                                    absl::Duration wait) {
  v1::PublishRequest request;
  request.set_packed_slots(packed);
  if (wait > absl::ZeroDuration()) SetDuration(wait, request.mutable_wait());
  return PublishRequest(request);
}

absl::StatusOr<std::vector<Completion>> Client::Poll(absl::Span<const uint64_t> tickets,
                                                     absl::Duration wait) {
  v1::PollRequest request;
  request.mutable_tickets()->Add(tickets.begin(), tickets.end());
  SetDuration(wait, request.mutable_wait());
  v1::PollResponse response;
  grpc::Status s = WithRetries([&] {
    response.Clear();
    return megakernel_->Poll(NewContext(options_.rpc_timeout + wait).get(), request, &response);
  });
  if (!s.ok()) return FromGrpcStatus(s);
  std::vector<Completion> out;
  for (const auto& c : response.completions()) out.push_back(FromProto(c));
  return out;
}

absl::StatusOr<v1::Telemetry> Client::GetTelemetry(absl::Span<const uint32_t> window_opcodes) {
  v1::TelemetryRequest request;
  request.mutable_window_opcodes()->Add(window_opcodes.begin(), window_opcodes.end());
  v1::Telemetry response;
  grpc::Status s = WithRetries([&] {
    return megakernel_->GetTelemetry(NewContext(options_.rpc_timeout).get(), request, &response);
  });
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

std::unique_ptr<Stream> Client::OpenStream() {
  auto context = NewContext(absl::InfiniteDuration());
  auto rw = megakernel_->Stream(context.get());
  return std::make_unique<Stream>(std::move(context), std::move(rw));
}

absl::StatusOr<std::string> Client::Echo(const std::string& payload) {
  v1::EchoRequest request;
  request.set_payload(payload);
  v1::EchoResponse response;
  grpc::Status s = diagnostics_->Echo(NewContext(options_.rpc_timeout).get(), request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response.payload();
}

absl::Status Client::SetTenantEnabled(uint32_t tenant, bool enabled) {
  v1::SetTenantEnabledRequest request;
  request.set_tenant(tenant);
  request.set_enabled(enabled);
  v1::SetTenantEnabledResponse response;
  return FromGrpcStatus(
      admin_->SetTenantEnabled(NewContext(options_.rpc_timeout).get(), request, &response));
}

absl::StatusOr<v1::DrainResponse> Client::Drain() {
  v1::DrainResponse response;
  grpc::Status s = admin_->Drain(NewContext(absl::Minutes(5)).get(), v1::DrainRequest(), &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::Status Client::Shutdown(bool drain) {
  v1::ShutdownRequest request;
  request.set_drain(drain);
  v1::ShutdownResponse response;
  return FromGrpcStatus(
      admin_->Shutdown(NewContext(options_.rpc_timeout).get(), request, &response));
}

}  // namespace mk::client
