#include "soak_stream.h"

#include <utility>

namespace mk::mkctl::soak {

StreamLane::StreamLane(client::Client* client, TenantLedger* ledger, bool packed, bool track_acks,
                       Hooks hooks)
    : client_(client),
      ledger_(ledger),
      packed_(packed),
      track_acks_(track_acks),
      hooks_(std::move(hooks)) {
  stream_ = client_->OpenStream();
  writer_ = std::thread([this] { WriterLoop(); });
  reader_ = std::thread([this] { ReaderLoop(); });
}

StreamLane::~StreamLane() { Close(absl::Now()); }

bool StreamLane::Send(Batch batch, bool expect_refusal) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closing_ || ended_) return false;
  const uint64_t id = next_request_id_++;
  // The call begins before the request is queued: tickets it may get are above every ticket
  // known now (the ledger's gap watermark).
  unacked_[id] = Request{ledger_->BeginCall(), std::move(batch.kinds), expect_refusal};
  v1::PublishRequest request = ToRequest(batch.slots, packed_, absl::ZeroDuration());
  request.set_request_id(id);
  queue_.push_back(std::move(request));
  cv_.notify_all();
  return true;
}

void StreamLane::WriterLoop() {
  for (;;) {
    v1::PublishRequest request;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return !queue_.empty() || closing_ || ended_; });
      if (ended_) return;
      if (queue_.empty()) break;  // closing, everything written
      request = std::move(queue_.front());
      queue_.pop_front();
    }
    if (!stream_->Write(request)) return;  // the stream ended; the reader sees it
  }
  stream_->WritesDone();
}

void StreamLane::OnBatch(const v1::CompletionBatch& batch) {
  // Acks first: the server sends a request's ack no later than its first completion.
  for (const v1::PublishAck& ack : batch.acks()) {
    Request request;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = unacked_.find(ack.request_id());
      if (it == unacked_.end()) continue;  // not ours: the server echoes ids it was sent
      request = std::move(it->second);
      unacked_.erase(it);
      cv_.notify_all();  // WaitAcked
    }
    if (ack.error_code() != 0) {
      ledger_->EndCall(request.call);
      hooks_.on_refused(ack.error_code(), request.expect_refusal);
      continue;
    }
    if (request.expect_refusal) hooks_.on_refused(0, true);
    if (ack.count() != request.kinds.size()) request.kinds.resize(ack.count(), SlotKind::kUnknown);
    ledger_->Accepted(ack.first_ticket(), request.kinds, /*pollable=*/false);
    ledger_->EndCall(request.call);
    if (track_acks_) {
      std::lock_guard<std::mutex> lock(mu_);
      for (uint64_t i = 0; i < ack.count(); ++i) acked_.push_back(ack.first_ticket() + i);
    }
  }
  std::vector<client::Completion> completions;
  completions.reserve(batch.completions_size());
  for (const v1::Completion& c : batch.completions()) completions.push_back(client::FromProto(c));
  if (!batch.packed_completions().empty()) {
    auto packed = client::DecodePackedCompletions(batch.packed_completions());
    if (packed.ok()) {
      completions.insert(completions.end(), packed->begin(), packed->end());
    } else {
      hooks_.on_refused(static_cast<int>(packed.status().code()), false);
    }
  }
  if (!completions.empty()) {
    ledger_->Record(completions);
    hooks_.on_progress();
  }
}

void StreamLane::ReaderLoop() {
  v1::CompletionBatch batch;
  while (stream_->Read(&batch)) OnBatch(batch);
  bool closing;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = true;
    closing = closing_;
    cv_.notify_all();
  }
  writer_.join();  // Finish only once no write is in progress
  stream_->Finish().IgnoreError();
  std::map<uint64_t, Request> unacked;
  {
    std::lock_guard<std::mutex> lock(mu_);
    unacked.swap(unacked_);
  }
  // Requests never acknowledged: if the server accepted one, its tickets are gaps now.
  for (const auto& [id, request] : unacked) ledger_->EndCall(request.call);
  if (!closing) hooks_.on_broken();
  hooks_.on_progress();
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  cv_.notify_all();
}

bool StreamLane::WaitAcked(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_until(lock, absl::ToChronoTime(deadline),
                        [this] { return unacked_.empty() || ended_; });
}

std::vector<uint64_t> StreamLane::Cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;  // the end that follows is the client's doing, not a broken stream
    cv_.notify_all();
  }
  stream_->Cancel();
  Close(absl::Now());
  std::lock_guard<std::mutex> lock(mu_);
  return acked_;
}

void StreamLane::Close(absl::Time deadline) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    closing_ = true;
    cv_.notify_all();
    const auto until = absl::ToChronoTime(deadline);
    if (!cv_.wait_until(lock, until, [this] { return stopped_; })) {
      lock.unlock();
      stream_->Cancel();  // the deadline passed: give up the rest
      lock.lock();
      cv_.wait(lock, [this] { return stopped_; });
    }
  }
  if (reader_.joinable()) reader_.join();
}

}  // namespace mk::mkctl::soak
