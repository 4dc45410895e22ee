#include "stream_reactor.h"

#include <algorithm>

#include "convert.h"
#include "status_mapping.h"

namespace mk::server {

namespace {
// Completions per CompletionBatch message (64 KiB when packed).
constexpr size_t kCompletionsPerMessage = 1024;
constexpr size_t kPackedBytes = kCompletionsPerMessage * protocol::kSlotBytes;
}  // namespace

grpc::ServerBidiReactor<v1::PublishRequest, v1::CompletionBatch>* StreamReactor::Start(
    engine::Engine* engine, const absl::StatusOr<Caller>& caller, size_t max_pending,
    std::unique_ptr<TenantLimiter::Lease> lease) {
  if (!caller.ok()) {
    struct Rejected final : grpc::ServerBidiReactor<v1::PublishRequest, v1::CompletionBatch> {
      explicit Rejected(const grpc::Status& s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    return new Rejected(ToGrpcStatus(caller.status()));
  }
  return new StreamReactor(engine, caller->tenant, max_pending, std::move(lease));
}

StreamReactor::StreamReactor(engine::Engine* engine, uint32_t tenant, size_t max_pending,
                             std::unique_ptr<TenantLimiter::Lease> lease)
    : engine_(engine), tenant_(tenant), max_pending_(max_pending), lease_(std::move(lease)) {
  StartRead(&request_);
}

void StreamReactor::OnReadDone(bool ok) {
  if (!ok) {  // the client half-closed (or the call broke): finish once everything is sent
    std::lock_guard<std::mutex> lock(mu_);
    half_closed_ = true;
    MaybeFinishLocked();
    return;
  }
  // Decoded once, here and without mu_: request_ is this reaction's until the next StartRead.
  QueuedRequest queued{request_.request_id(), DecodePublish(request_)};
  queued.may_wait =
      queued.slots.ok() &&
      std::any_of(queued.slots->begin(), queued.slots->end(), [](const engine::SlotPayload& slot) {
        return slot.opcode == protocol::opcode::kLoadMiss;
      });
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return;
    if (packed_mode_ < 0) packed_mode_ = request_.has_packed_slots() ? 1 : 0;
    const bool ping_pong = outstanding_ == 0 && queued_.empty() && pending_count() == 0 &&
                           queued.count() <= kSmallRequest && !queued.may_wait;
    queued_slots_ += queued.count();
    queued_.push_back(std::move(queued));
    if (queued_.size() >= kReadAhead ||
        pending_count() + outstanding_ + queued_slots_ > max_pending_) {
      read_paused_ = true;  // flow control: MaybeResumeReadLocked starts it later
    } else if (ping_pong) {
      read_deferred_ = true;  // OnWriteDone starts it, as an echo server would
    } else {
      StartRead(&request_);  // read the next request while this one is published
    }
    if (publishing_) return;  // the reaction publishing now takes this request too, in order
    publishing_ = true;
  }
  PublishQueued();
}

void StreamReactor::PublishQueued() {
  for (;;) {
    QueuedRequest request;
    bool release = false;
    if (!TakeQueued(&request, &release)) {
      if (release) delete this;
      return;
    }
    // Published without mu_: engine threads delivering completions of earlier requests never
    // wait for a publish. A completion that beats its range's registration below is held in
    // early_ until then.
    const absl::StatusOr<engine::PublishResult> published =
        request.slots.ok() ? engine_->Publish(tenant_, *request.slots, {this})
                           : request.slots.status();
    std::vector<uint64_t> cancel;
    bool write;
    {
      std::lock_guard<std::mutex> lock(mu_);
      write = AcknowledgeLocked(request, published, &cancel);
    }
    if (write) StartWrite(&out_);
    // Outside mu_: cancelling delivers CANCELLED completions to OnCompletions.
    if (!cancel.empty()) engine_->Cancel(tenant_, cancel).IgnoreError();
  }
}

bool StreamReactor::TakeQueued(QueuedRequest* request, bool* release) {
  std::lock_guard<std::mutex> lock(mu_);
  if (queued_.empty() || cancelled_) {
    queued_.clear();
    queued_slots_ = 0;
    publishing_ = false;
    MaybeResumeReadLocked();
    MaybeFinishLocked();
    *release = ReleasableLocked();
    return false;
  }
  *request = std::move(queued_.front());
  queued_.pop_front();
  queued_slots_ -= request->count();
  MaybeResumeReadLocked();  // room in the queue again
  return true;
}

bool StreamReactor::AcknowledgeLocked(const QueuedRequest& request,
                                      const absl::StatusOr<engine::PublishResult>& published,
                                      std::vector<uint64_t>* cancel) {
  v1::PublishAck ack;
  ack.set_request_id(request.request_id);
  if (!published.ok()) {
    ack.set_error_code(static_cast<int>(published.status().code()));
    ack.set_error_message(std::string{published.status().message()});
    acks_.push_back(std::move(ack));
    rejection_pending_ = true;  // a rejection is sent at once, not held for a fuller message
    return PrepareWriteLocked();
  }
  ack.set_first_ticket(published->first_ticket);
  ack.set_count(published->count);
  outstanding_ += published->count;
  open_ranges_[published->first_ticket] = {published->count, published->count, request.may_wait};
  waiting_ranges_ += request.may_wait;
  if (cancelled_) {  // OnCancel ran meanwhile and could not see this range
    for (uint64_t t = published->first_ticket; t < published->first_ticket + published->count;
         ++t) {
      cancel->push_back(t);
    }
  }
  // An accepted request's ack rides with its first completions (one message instead of two).
  acks_.push_back(std::move(ack));
  if (early_.empty()) return false;
  std::vector<engine::Completion> early;  // after the ack: a client sees the ack first
  early.swap(early_);
  return DeliverLocked(early);
}

void StreamReactor::OnCompletions(absl::Span<const engine::Completion> batch) {
  bool write, release;
  {
    std::lock_guard<std::mutex> lock(mu_);
    write = DeliverLocked(batch);
    MaybeFinishLocked();
    release = ReleasableLocked();
  }
  if (write) StartWrite(&out_);  // never with `release`: a write in flight keeps the call open
  if (release) delete this;
}

bool StreamReactor::DeliverLocked(absl::Span<const engine::Completion> batch) {
  // Completions of one request mostly arrive together and in order: look a range up only when
  // the ticket leaves the one found last.
  auto range = open_ranges_.end();
  size_t delivered = 0;
  for (const engine::Completion& c : batch) {
    if (range == open_ranges_.end() || c.ticket < range->first ||
        c.ticket >= range->first + range->second.count) {
      range = open_ranges_.upper_bound(c.ticket);
      if (range == open_ranges_.begin() ||
          c.ticket >= std::prev(range)->first + std::prev(range)->second.count) {
        range = open_ranges_.end();
        early_.push_back(c);  // its request is still being registered
        continue;
      }
      --range;
    }
    if (--range->second.remaining == 0) {
      waiting_ranges_ -= range->second.may_wait;
      open_ranges_.erase(range);
      range = open_ranges_.end();
    }
    --outstanding_;
    if (done_ || cancelled_) continue;
    if (packed_mode_ == 1) {
      AppendPackedLocked(c);
    } else {
      pending_.push_back(c);
    }
    ++delivered;
  }
  return delivered != 0 && PrepareWriteLocked();
}

void StreamReactor::AppendPackedLocked(const engine::Completion& c) {
  if (packed_chunks_.empty() || packed_chunks_.back().size() == kPackedBytes) {
    packed_chunks_.emplace_back();
    packed_chunks_.back().reserve(kPackedBytes);
  }
  std::string& chunk = packed_chunks_.back();
  const size_t at = chunk.size();
  chunk.resize(at + protocol::kSlotBytes);
  AppendPacked(c, chunk.data() + at);
  packed_bytes_ += protocol::kSlotBytes;
}

void StreamReactor::ClearPackedLocked() {
  packed_chunks_.clear();
  packed_bytes_ = 0;
}

bool StreamReactor::HoldPartialLocked() const {
  if (rejection_pending_ || packed_chunks_.size() != 1 || waiting_ranges_ != 0) return false;
  const size_t room = (kPackedBytes - packed_chunks_.front().size()) / protocol::kSlotBytes;
  return room != 0 && outstanding_ >= room;
}

bool StreamReactor::PrepareWriteLocked() {
  if (write_in_flight_ || finished_ || done_ || cancelled_) return false;
  if (pending_count() == 0 && acks_.empty()) return false;
  if (HoldPartialLocked()) return false;
  rejection_pending_ = false;  // every queued ack goes out with this message
  out_.Clear();
  for (v1::PublishAck& ack : acks_) *out_.add_acks() = std::move(ack);
  acks_.clear();
  if (!packed_chunks_.empty()) {
    packed_bytes_ -= packed_chunks_.front().size();
    out_.mutable_packed_completions()->swap(packed_chunks_.front());  // no copy
    packed_chunks_.pop_front();
  }
  const size_t n = std::min(pending_.size(), kCompletionsPerMessage);
  for (size_t i = 0; i < n; ++i) ToProto(pending_[i], out_.add_completions());
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(n));
  write_in_flight_ = true;
  return true;
}

void StreamReactor::OnWriteDone(bool ok) {
  bool write;
  {
    std::lock_guard<std::mutex> lock(mu_);
    write_in_flight_ = false;
    if (!ok) {  // the client is gone; OnCancel follows
      cancelled_ = true;
      pending_.clear();
      ClearPackedLocked();
      MaybeFinishLocked();
      return;
    }
    write = PrepareWriteLocked();
    if (read_deferred_) {
      read_deferred_ = false;
      if (!half_closed_ && !cancelled_) StartRead(&request_);
    }
    MaybeResumeReadLocked();
    MaybeFinishLocked();
  }
  if (write) StartWrite(&out_);
}

void StreamReactor::MaybeResumeReadLocked() {
  if (!read_paused_ || half_closed_ || cancelled_ || queued_.size() >= kReadAhead) return;
  if (pending_count() + outstanding_ + queued_slots_ > max_pending_ / 2) return;
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
  if (half_closed_ && !publishing_ && queued_.empty() && outstanding_ == 0 &&
      pending_count() == 0 && acks_.empty()) {
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
    ClearPackedLocked();
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
  if (released_ || !done_ || publishing_ || outstanding_ != 0) return false;
  released_ = true;
  return true;
}

}  // namespace mk::server
