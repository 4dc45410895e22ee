#include "server/src/stream_reactor.h"

#include "server/src/convert.h"
#include "server/src/status_mapping.h"

namespace mk::server {

namespace {
// Completions per CompletionBatch message (64 KiB when packed).
constexpr size_t kCompletionsPerMessage = 1024;
}  // namespace

grpc::ServerBidiReactor<v1::PublishRequest, v1::CompletionBatch>* StreamReactor::Start(
    engine::Engine* engine, const absl::StatusOr<Caller>& caller, size_t max_pending) {
  if (!caller.ok()) {
    struct Rejected final : grpc::ServerBidiReactor<v1::PublishRequest, v1::CompletionBatch> {
      explicit Rejected(const grpc::Status& s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    return new Rejected(ToGrpcStatus(caller.status()));
  }
  return new StreamReactor(engine, caller->tenant, max_pending);
}

StreamReactor::StreamReactor(engine::Engine* engine, uint32_t tenant, size_t max_pending)
    : engine_(engine), tenant_(tenant), max_pending_(max_pending) {
  StartRead(&request_);
}

void StreamReactor::OnReadDone(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!ok) {  // the client half-closed (or the call broke): finish once everything is sent
    half_closed_ = true;
    MaybeFinishLocked();
    return;
  }
  if (cancelled_) return;
  v1::PublishAck ack;
  ack.set_request_id(request_.request_id());
  if (packed_mode_ < 0) packed_mode_ = request_.has_packed_slots() ? 1 : 0;
  auto slots = DecodePublish(request_);
  // Publishing under mu_ orders this stream's bookkeeping before any completion of these slots
  // (OnCompletions takes mu_); the engine never waits on a sink, so this cannot deadlock.
  absl::StatusOr<engine::PublishResult> published =
      slots.ok() ? engine_->Publish(tenant_, *slots, {this}) : slots.status();
  if (published.ok()) {
    ack.set_first_ticket(published->first_ticket);
    ack.set_count(published->count);
    outstanding_ += published->count;
    open_ranges_[published->first_ticket] = {published->count, published->count};
  } else {
    ack.set_error_code(static_cast<int>(published.status().code()));
    ack.set_error_message(std::string(published.status().message()));
  }
  const bool accepted = published.ok();
  acks_.push_back(std::move(ack));
  // An accepted request's ack rides with its first completions (one message instead of two);
  // a rejection is sent at once.
  if (!accepted) MaybeWriteLocked();
  if (pending_count() + outstanding_ > max_pending_) {
    read_paused_ = true;  // flow control: resume when the client has read enough
  } else {
    StartRead(&request_);
  }
}

void StreamReactor::OnCompletions(absl::Span<const engine::Completion> batch) {
  bool release;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Completions of one request mostly arrive together and in order: look a range up only
    // when the ticket leaves the one found last.
    auto range = open_ranges_.end();
    for (const engine::Completion& c : batch) {
      if (range == open_ranges_.end() || c.ticket < range->first ||
          c.ticket >= range->first + range->second.count) {
        range = open_ranges_.upper_bound(c.ticket);
        if (range == open_ranges_.begin()) {
          range = open_ranges_.end();
          continue;
        }
        --range;
      }
      if (--range->second.remaining == 0) {
        open_ranges_.erase(range);
        range = open_ranges_.end();
      }
    }
    outstanding_ -= batch.size();
    if (!done_ && !cancelled_) {
      if (packed_mode_ == 1) {
        const size_t at = pending_packed_.size();
        pending_packed_.resize(at + batch.size() * protocol::kSlotBytes);
        for (size_t i = 0; i < batch.size(); ++i) {
          AppendPacked(batch[i], pending_packed_.data() + at + i * protocol::kSlotBytes);
        }
      } else {
        pending_.insert(pending_.end(), batch.begin(), batch.end());
      }
      MaybeWriteLocked();
    }
    MaybeFinishLocked();
    release = ReleasableLocked();
  }
  if (release) delete this;
}

void StreamReactor::MaybeWriteLocked() {
  if (write_in_flight_ || finished_ || done_ || cancelled_) return;
  if (pending_count() == 0 && acks_.empty()) return;
  out_.Clear();
  for (v1::PublishAck& ack : acks_) *out_.add_acks() = std::move(ack);
  acks_.clear();
  constexpr size_t kPackedBytes = kCompletionsPerMessage * protocol::kSlotBytes;
  if (pending_packed_.size() <= kPackedBytes) {
    out_.mutable_packed_completions()->swap(pending_packed_);  // no copy
    pending_packed_.clear();
  } else {
    out_.set_packed_completions(pending_packed_.substr(0, kPackedBytes));
    pending_packed_.erase(0, kPackedBytes);
  }
  const size_t n = std::min(pending_.size(), kCompletionsPerMessage);
  for (size_t i = 0; i < n; ++i) ToProto(pending_[i], out_.add_completions());
  pending_.erase(pending_.begin(), pending_.begin() + n);
  write_in_flight_ = true;
  StartWrite(&out_);
}

void StreamReactor::OnWriteDone(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  write_in_flight_ = false;
  if (!ok) {  // the client is gone; OnCancel follows
    cancelled_ = true;
    pending_.clear();
    pending_packed_.clear();
    MaybeFinishLocked();
    return;
  }
  MaybeWriteLocked();
  MaybeResumeReadLocked();
  MaybeFinishLocked();
}

void StreamReactor::MaybeResumeReadLocked() {
  if (!read_paused_ || half_closed_ || cancelled_) return;
  if (pending_count() + outstanding_ > max_pending_ / 2) return;
  read_paused_ = false;
  StartRead(&request_);
}

void StreamReactor::MaybeFinishLocked() {
  if (finished_ || write_in_flight_) return;
  if (cancelled_) {
    finished_ = true;
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream: cancelled"));
    return;
  }
  if (half_closed_ && outstanding_ == 0 && pending_count() == 0 && acks_.empty()) {
    finished_ = true;
    Finish(grpc::Status::OK);
  }
}

void StreamReactor::OnCancel() {
  std::vector<uint64_t> tickets;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    pending_.clear();
    pending_packed_.clear();
    for (const auto& [first, range] : open_ranges_) {
      // Cancel ignores tickets that already completed, so the whole range can be passed.
      for (uint64_t t = first; t < first + range.count; ++t) tickets.push_back(t);
    }
    MaybeFinishLocked();
  }
  // Outside mu_: cancelling delivers CANCELLED completions to OnCompletions.
  if (!tickets.empty()) engine_->Cancel(tenant_, tickets).IgnoreError();
}

void StreamReactor::OnDone() {
  bool release;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    release = ReleasableLocked();
  }
  if (release) delete this;
}

bool StreamReactor::ReleasableLocked() {
  if (released_ || !done_ || outstanding_ != 0) return false;
  released_ = true;
  return true;
}

}  // namespace mk::server
