// mk.v1.Megakernel's tenant-buffer RPCs (docs/buffers.md): CreateBuffer, WriteBuffer (a client
// stream of chunks), ReadBuffer (a server stream of chunks), FreeBuffer, ListBuffers. Every call
// authenticates a tenant; the engine enforces that a handle is only its creator's.
//
// Threading: the reactors' callbacks run on gRPC's threads, one at a time per call (each
// starts the next read or write only when the previous one is done); the engine's buffer
// calls copy synchronously, so no callback waits on anything but a copy. Lifetime: each
// reactor deletes itself in OnDone, giving back its place among the tenant's transfers.
// Memory: a transfer holds at most one message (a WriteBuffer chunk is dropped once copied; a
// ReadBuffer chunk is at most 4 MiB), and a tenant has at most --max_streams_per_tenant
// transfers open.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "megakernel_service.h"
#include "status_mapping.h"

namespace mk::server {

namespace {

constexpr uint32_t kDefaultChunkBytes = 1u << 20;
constexpr uint32_t kMaxChunkBytes = 4u << 20;

void ToProto(const engine::BufferInfo& info, v1::Buffer* out) {
  out->set_handle(info.handle);
  out->set_bytes(info.bytes);
}

// Writes each chunk as it arrives; the first failed chunk ends the call with its error and
// index (the earlier chunks stay written).
class WriteBufferReactor final : public grpc::ServerReadReactor<v1::WriteBufferChunk> {
 public:
  WriteBufferReactor(engine::Engine* engine, uint32_t tenant, v1::WriteBufferResponse* response,
                     std::unique_ptr<TenantLimiter::Lease> lease)
      : engine_(engine), tenant_(tenant), response_(response), lease_(std::move(lease)) {
    StartRead(&chunk_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {  // the client's stream ended (or the call was cancelled)
      response_->set_bytes_written(written_);
      response_->set_chunks(chunks_);
      return Finish(grpc::Status::OK);
    }
    const absl::Status s =
        engine_->WriteBuffer(tenant_, chunk_.handle(), chunk_.offset(), chunk_.data());
    if (!s.ok()) {
      return Finish(ToGrpcStatus(
          absl::Status(s.code(), absl::StrCat("write_buffer: chunk ", chunks_, " (", written_,
                                              " bytes written before it): ", s.message()))));
    }
    written_ += chunk_.data().size();
    ++chunks_;
    std::string().swap(*chunk_.mutable_data());  // hold no copied chunk while waiting
    StartRead(&chunk_);
  }
  void OnDone() override { delete this; }

 private:
  engine::Engine* const engine_;
  const uint32_t tenant_;
  v1::WriteBufferResponse* const response_;
  v1::WriteBufferChunk chunk_;
  uint64_t written_ = 0;
  uint32_t chunks_ = 0;
  const std::unique_ptr<TenantLimiter::Lease> lease_;
};

// Streams [offset, offset + length) in chunks, reading each from the engine just before it is
// written to the wire.
class ReadBufferReactor final : public grpc::ServerWriteReactor<v1::BufferData> {
 public:
  ReadBufferReactor(engine::Engine* engine, uint32_t tenant, const v1::ReadBufferRequest& request,
                    std::unique_ptr<TenantLimiter::Lease> lease)
      : lease_(std::move(lease)),
        engine_(engine),
        tenant_(tenant),
        handle_(request.handle()),
        next_(request.offset()),
        end_(request.offset() + request.length()),
        chunk_bytes_(
            std::min(request.chunk_bytes() == 0 ? kDefaultChunkBytes : request.chunk_bytes(),
                     kMaxChunkBytes)) {
    WriteNext();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "read_buffer: cancelled"));
    WriteNext();
  }
  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (next_ >= end_) return Finish(grpc::Status::OK);
    const uint64_t n = std::min<uint64_t>(chunk_bytes_, end_ - next_);
    message_.set_offset(next_);
    std::string* data = message_.mutable_data();
    data->resize(n);
    const absl::Status s = engine_->ReadBuffer(tenant_, handle_, next_, absl::MakeSpan(*data));
    if (!s.ok()) return Finish(ToGrpcStatus(s));
    next_ += n;
    StartWrite(&message_);
  }

  const std::unique_ptr<TenantLimiter::Lease> lease_;
  engine::Engine* const engine_;
  const uint32_t tenant_;
  const uint32_t handle_;
  uint64_t next_;
  const uint64_t end_;
  const uint32_t chunk_bytes_;
  v1::BufferData message_;
};

// A write reactor that only reports an error.
class RejectedRead final : public grpc::ServerWriteReactor<v1::BufferData> {
 public:
  explicit RejectedRead(const grpc::Status& s) { Finish(s); }
  void OnDone() override { delete this; }
};

class RejectedWrite final : public grpc::ServerReadReactor<v1::WriteBufferChunk> {
 public:
  explicit RejectedWrite(const grpc::Status& s) { Finish(s); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerUnaryReactor* MegakernelService::CreateBuffer(grpc::CallbackServerContext* context,
                                                          const v1::CreateBufferRequest* request,
                                                          v1::CreateBufferResponse* response) {
  absl::StatusOr<Caller> caller = tenants_->AuthenticateTenant(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  auto created = engine_->CreateBuffer(caller->tenant, request->bytes());
  if (created.ok()) ToProto(*created, response->mutable_buffer());
  return Finished(context, ToGrpcStatus(created.status()));
}

grpc::ServerReadReactor<v1::WriteBufferChunk>* MegakernelService::WriteBuffer(
    grpc::CallbackServerContext* context, v1::WriteBufferResponse* response) {
  absl::StatusOr<Caller> caller = tenants_->AuthenticateTenant(*context);
  if (!caller.ok()) return new RejectedWrite(ToGrpcStatus(caller.status()));
  auto lease = transfers_.Acquire(caller->tenant);
  if (!lease.ok()) return new RejectedWrite(ToGrpcStatus(lease.status()));
  return new WriteBufferReactor(engine_, caller->tenant, response, *std::move(lease));
}

grpc::ServerWriteReactor<v1::BufferData>* MegakernelService::ReadBuffer(
    grpc::CallbackServerContext* context, const v1::ReadBufferRequest* request) {
  absl::StatusOr<Caller> caller = tenants_->AuthenticateTenant(*context);
  if (!caller.ok()) return new RejectedRead(ToGrpcStatus(caller.status()));
  if (request->length() > UINT64_MAX - request->offset()) {
    return new RejectedRead(grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                                         "read_buffer: offset + length overflows 64 bits"));
  }
  // The whole range is checked before the first byte is sent: a read past the end fails at
  // once rather than after streaming the part that exists.
  const uint64_t end = request->offset() + request->length();
  const absl::Status range = engine_->ReadBuffer(caller->tenant, request->handle(), end, {});
  if (!range.ok()) {
    if (range.code() != absl::StatusCode::kOutOfRange) {
      return new RejectedRead(ToGrpcStatus(range));
    }
    return new RejectedRead(ToGrpcStatus(absl::OutOfRangeError(absl::StrFormat(
        "read_buffer: a read of %u bytes at offset %u runs past the end of buffer 0x%08x; "
        "ListBuffers shows its size",
        request->length(), request->offset(), request->handle()))));
  }
  auto lease = transfers_.Acquire(caller->tenant);
  if (!lease.ok()) return new RejectedRead(ToGrpcStatus(lease.status()));
  return new ReadBufferReactor(engine_, caller->tenant, *request, *std::move(lease));
}

grpc::ServerUnaryReactor* MegakernelService::FreeBuffer(grpc::CallbackServerContext* context,
                                                        const v1::FreeBufferRequest* request,
                                                        v1::FreeBufferResponse*) {
  absl::StatusOr<Caller> caller = tenants_->AuthenticateTenant(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  return Finished(context, ToGrpcStatus(engine_->FreeBuffer(caller->tenant, request->handle())));
}

grpc::ServerUnaryReactor* MegakernelService::ListBuffers(grpc::CallbackServerContext* context,
                                                         const v1::ListBuffersRequest*,
                                                         v1::ListBuffersResponse* response) {
  absl::StatusOr<Caller> caller = tenants_->AuthenticateTenant(*context);
  if (!caller.ok()) return Finished(context, ToGrpcStatus(caller.status()));
  auto listed = engine_->ListBuffers(caller->tenant);
  if (listed.ok()) {
    for (const engine::BufferInfo& b : *listed) ToProto(b, response->add_buffers());
  }
  return Finished(context, ToGrpcStatus(listed.status()));
}

}  // namespace mk::server
