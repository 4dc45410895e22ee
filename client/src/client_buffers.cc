// The Client's tenant-buffer calls (docs/buffers.md): unary create / free / list with the
// client's retry policy, and the chunked WriteBuffer / ReadBuffer streams (one attempt each: a
// failed stream says which chunk failed, and rewriting a range is the caller's choice).
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "mk/client/client.h"

namespace mk::client {

namespace {
// A transfer's deadline grows with its size, so a large buffer is not cut off by rpc_timeout.
absl::Duration TransferTimeout(absl::Duration base, uint64_t bytes) {
  return base + absl::Seconds(static_cast<double>(bytes) / (64.0 * (1 << 20)));
}
}  // namespace

absl::StatusOr<v1::Buffer> Client::CreateBuffer(uint64_t bytes) {
  v1::CreateBufferRequest request;
  request.set_bytes(bytes);
  v1::CreateBufferResponse response;
  // One attempt: a retry after an attempt that timed out but succeeded would leak a buffer.
  grpc::Status s =
      megakernel_->CreateBuffer(NewContext(options_.rpc_timeout).get(), request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response.buffer();
}

absl::StatusOr<uint64_t> Client::WriteBuffer(uint32_t handle, uint64_t offset,
                                             absl::string_view data, uint32_t chunk_bytes,
                                             const Progress& progress) {
  if (chunk_bytes == 0) return absl::InvalidArgumentError("write_buffer: chunk_bytes is 0");
  auto context = NewContext(TransferTimeout(options_.rpc_timeout, data.size()));
  v1::WriteBufferResponse response;
  auto writer = megakernel_->WriteBuffer(context.get(), &response);
  v1::WriteBufferChunk chunk;
  chunk.set_handle(handle);
  uint64_t sent = 0;
  do {  // an empty write still sends one (empty) chunk, which checks the handle
    const uint64_t n = std::min<uint64_t>(chunk_bytes, data.size() - sent);
    chunk.set_offset(offset + sent);
    chunk.set_data(data.data() + sent, n);
    if (!writer->Write(chunk)) break;  // the server ended the call: Finish says why
    sent += n;
    if (progress) progress(sent, data.size());
  } while (sent < data.size());
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) return FromGrpcStatus(s);
  return response.bytes_written();
}

absl::StatusOr<std::string> Client::ReadBuffer(uint32_t handle, uint64_t offset, uint64_t length,
                                               uint32_t chunk_bytes, const Progress& progress) {
  v1::ReadBufferRequest request;
  request.set_handle(handle);
  request.set_offset(offset);
  request.set_length(length);
  request.set_chunk_bytes(chunk_bytes);
  auto context = NewContext(TransferTimeout(options_.rpc_timeout, length));
  auto reader = megakernel_->ReadBuffer(context.get(), request);
  std::string out;
  out.reserve(std::min<uint64_t>(length, 64u << 20));  // before the server checked the range
  v1::BufferData message;
  while (reader->Read(&message)) {
    if (message.offset() != offset + out.size()) {
      context->TryCancel();
      reader->Finish().IgnoreError();
      return absl::DataLossError(absl::StrCat("read_buffer: a chunk at offset ", message.offset(),
                                              " where ", offset + out.size(), " was expected"));
    }
    out += message.data();
    if (progress) progress(out.size(), length);
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) return FromGrpcStatus(s);
  if (out.size() != length) {
    return absl::DataLossError(
        absl::StrCat("read_buffer: ", out.size(), " of ", length, " bytes arrived"));
  }
  return out;
}

absl::Status Client::FreeBuffer(uint32_t handle) {
  v1::FreeBufferRequest request;
  request.set_handle(handle);
  v1::FreeBufferResponse response;
  return FromGrpcStatus(WithRetries([&] {
    return megakernel_->FreeBuffer(NewContext(options_.rpc_timeout).get(), request, &response);
  }));
}

absl::StatusOr<std::vector<v1::Buffer>> Client::ListBuffers() {
  v1::ListBuffersResponse response;
  grpc::Status s = WithRetries([&] {
    response.Clear();
    return megakernel_->ListBuffers(NewContext(options_.rpc_timeout).get(), {}, &response);
  });
  if (!s.ok()) return FromGrpcStatus(s);
  return std::vector<v1::Buffer>(response.buffers().begin(), response.buffers().end());
}

}  // namespace mk::client
