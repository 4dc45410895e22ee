// The C++ client of megakerneld: typed and packed publish (optionally waiting for results),
// poll, the bidirectional stream, telemetry, admin calls and the echo baseline.
//
// Retries: Publish, Poll and telemetry calls retry with exponential backoff on UNAVAILABLE and
// RESOURCE_EXHAUSTED (the server's "ring full, retry" answer), up to `max_attempts`. A Publish
// that failed with UNAVAILABLE after the request left may have been accepted; the server's
// UNAVAILABLE answers (draining) mean it was not.
//
// Thread safety: a Client may be used from many threads at once. A Stream belongs to one
// writer thread and one reader thread.
#ifndef MK_CLIENT_CLIENT_H_
#define MK_CLIENT_CLIENT_H_

#include <grpcpp/channel.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mk/v1/megakernel.grpc.pb.h"

namespace mk::client {

struct ClientOptions {
  std::string target = "127.0.0.1:50051";
  std::string token;          // bearer token; empty in development mode
  std::string tls_ca_file;    // PEM roots; set to use TLS
  std::string tls_cert_file;  // PEM client certificate, for mutual TLS
  std::string tls_key_file;
  std::string tls_server_name;  // overrides the name checked in the server certificate
  int max_attempts = 6;
  absl::Duration initial_backoff = absl::Milliseconds(1);
  absl::Duration max_backoff = absl::Milliseconds(500);
  absl::Duration rpc_timeout = absl::Seconds(30);  // per attempt, unless a call says otherwise
};

struct Slot {
  uint32_t opcode = 0;
  uint32_t priority = 2;
  std::vector<uint32_t> args;
};

struct Completion {
  enum class Status { kDone, kFault, kCancelled };
  uint64_t ticket = 0;
  Status status = Status::kDone;
  std::vector<uint32_t> results;
  uint32_t fault_code = 0;
  uint32_t fault_detail = 0;
};

struct PublishResult {
  uint64_t first_ticket = 0;
  uint32_t count = 0;
  std::vector<Completion> completions;  // when published with a wait
};

absl::Status FromGrpcStatus(const grpc::Status& status);
Completion FromProto(const v1::Completion& c);
// Decodes CompletionBatch.packed_completions (64 bytes each).
absl::StatusOr<std::vector<Completion>> DecodePackedCompletions(const std::string& packed);
// Encodes slots in the 64-byte packed wire form (STATUS and TENANT words zero).
std::string EncodePacked(absl::Span<const Slot> slots);

// A bidirectional Stream on a synchronous gRPC stream.
class Stream {
 public:
  Stream(std::unique_ptr<grpc::ClientContext> context,
         std::unique_ptr<grpc::ClientReaderWriter<v1::PublishRequest, v1::CompletionBatch>> rw)
      : context_(std::move(context)), rw_(std::move(rw)) {}
  bool Write(const v1::PublishRequest& request) { return rw_->Write(request); }
  bool Read(v1::CompletionBatch* batch) { return rw_->Read(batch); }
  bool WritesDone() { return rw_->WritesDone(); }
  absl::Status Finish() { return FromGrpcStatus(rw_->Finish()); }
  void Cancel() { context_->TryCancel(); }

 private:
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::PublishRequest, v1::CompletionBatch>> rw_;
};

class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Create(const ClientOptions& options);

  absl::StatusOr<PublishResult> Publish(absl::Span<const Slot> slots,
                                        absl::Duration wait = absl::ZeroDuration());
  absl::StatusOr<PublishResult> PublishPacked(const std::string& packed,
                                              absl::Duration wait = absl::ZeroDuration());
  // Sends a prepared request once more per attempt (retries included).
  absl::StatusOr<PublishResult> PublishRequest(const v1::PublishRequest& request);
  absl::StatusOr<std::vector<Completion>> Poll(absl::Span<const uint64_t> tickets,
                                               absl::Duration wait);
  absl::StatusOr<v1::Telemetry> GetTelemetry(absl::Span<const uint32_t> window_opcodes = {});
  std::unique_ptr<Stream> OpenStream();
  absl::StatusOr<std::string> Echo(const std::string& payload);

  // Tenant buffers (client_buffers.cc). WriteBuffer streams `data` in chunks of `chunk_bytes`
  // to [offset, offset + size); ReadBuffer streams [offset, offset + length) back. `progress`
  // (may be empty) hears the bytes done so far after each chunk. Large transfers get a
  // deadline of rpc_timeout plus one second per 64 MiB.
  using Progress = std::function<void(uint64_t done, uint64_t total)>;
  absl::StatusOr<v1::Buffer> CreateBuffer(uint64_t bytes);
  absl::StatusOr<uint64_t> WriteBuffer(uint32_t handle, uint64_t offset, absl::string_view data,
                                       uint32_t chunk_bytes = 1u << 20,
                                       const Progress& progress = nullptr);
  absl::StatusOr<std::string> ReadBuffer(uint32_t handle, uint64_t offset, uint64_t length,
                                         uint32_t chunk_bytes = 1u << 20,
                                         const Progress& progress = nullptr);
  absl::Status FreeBuffer(uint32_t handle);
  absl::StatusOr<std::vector<v1::Buffer>> ListBuffers();

  absl::Status SetTenantEnabled(uint32_t tenant, bool enabled);
  absl::StatusOr<v1::DrainResponse> Drain();
  absl::Status Shutdown(bool drain);

  // For calls the wrapper does not cover (watch, resources, the echo stream).
  std::unique_ptr<grpc::ClientContext> NewContext(absl::Duration timeout) const;
  v1::Megakernel::Stub* megakernel() { return megakernel_.get(); }
  v1::Diagnostics::Stub* diagnostics() { return diagnostics_.get(); }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  explicit Client(const ClientOptions& options, std::shared_ptr<grpc::Channel> channel);
  // Runs `call` (one attempt, fresh context each) with the retry policy.
  template <typename Call>
  grpc::Status WithRetries(Call&& call) {
    absl::Duration backoff = options_.initial_backoff;
    for (int attempt = 1;; ++attempt) {
      grpc::Status status = call();
      const bool retryable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                             status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
      if (status.ok() || !retryable || attempt >= options_.max_attempts) return status;
      std::this_thread::sleep_for(absl::ToChronoNanoseconds(backoff));  // retry backoff
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
  }

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Megakernel::Stub> megakernel_;
  std::unique_ptr<v1::Admin::Stub> admin_;
  std::unique_ptr<v1::Diagnostics::Stub> diagnostics_;
};

}  // namespace mk::client

#endif  // MK_CLIENT_CLIENT_H_
