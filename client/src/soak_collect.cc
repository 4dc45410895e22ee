// TenantSession's collecting side: the poller, the tail probe, and the end of an incarnation.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "soak_session.h"
#include "soak_stream.h"

namespace mk::mkctl::soak {

namespace {
constexpr size_t kPollBatch = 256;
constexpr size_t kSuspectBatch = 1024;
constexpr size_t kColdBatch = 4096;
constexpr absl::Duration kSuspectPollPeriod = absl::Milliseconds(200);
constexpr absl::Duration kColdPollPeriod = absl::Seconds(2);
constexpr absl::Duration kIdlePoll = absl::Milliseconds(20);
constexpr absl::Duration kRpcMargin = absl::Seconds(10);
constexpr absl::Duration kFinalSuspectWait = absl::Milliseconds(500);
}  // namespace

bool TenantSession::PollOnce(const std::vector<uint64_t>& tickets, absl::Duration wait) {
  v1::PollRequest request;
  request.mutable_tickets()->Add(tickets.begin(), tickets.end());
  const int64_t ns = absl::ToInt64Nanoseconds(wait);
  request.mutable_wait()->set_seconds(ns / 1'000'000'000);
  request.mutable_wait()->set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
  v1::PollResponse response;
  const grpc::Status s =
      client_->megakernel()->Poll(client_->NewContext(wait + kRpcMargin).get(), request, &response);
  if (s.ok()) {
    std::vector<client::Completion> got;
    got.reserve(response.completions_size());
    for (const v1::Completion& c : response.completions()) got.push_back(client::FromProto(c));
    ledger_.Record(got);
    NotifyProgress();
    return true;
  }
  // UNAVAILABLE, or CANCELLED by a server that is going away (its flush grace is over).
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
      (s.error_code() == grpc::StatusCode::CANCELLED && server_gone_->load())) {
    unreachable_ = true;
    NotifyProgress();
    if (!stopping_.load()) on_server_gone_();
    return false;
  }
  // NOT_FOUND: the tenant is owed nothing now, so none of these can arrive (their outcomes
  // went with answers the soak gave up). They stay without an outcome; Summarize judges them.
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) return false;
  Note(absl::StrCat("poll of ", tickets.size(),
                    " tickets failed: ", static_cast<int>(s.error_code()), " ", s.error_message()));
  std::lock_guard<std::mutex> lock(mu_);
  ++report_.poll_errors;
  return true;
}

void TenantSession::PollerLoop() {
  absl::Time next_suspect_poll = absl::Now();
  absl::Time next_cold_poll = absl::Now();
  for (;;) {
    absl::Duration pause = absl::ZeroDuration();
    if (unreachable_.load()) {
      pause = absl::Milliseconds(100);  // the server is gone; the incarnation is ending
    } else {
      ledger_.ScanGaps();
      if (absl::Now() >= next_suspect_poll) {  // tickets that may never be answered: no wait
        next_suspect_poll = absl::Now() + kSuspectPollPeriod;
        const std::vector<uint64_t> hot = ledger_.SuspectBatch(kSuspectBatch);
        if (!hot.empty()) PollOnce(hot, absl::ZeroDuration());
        ledger_.Polled(hot);
      }
      if (absl::Now() >= next_cold_poll) {
        next_cold_poll = absl::Now() + kColdPollPeriod;
        const std::vector<uint64_t> cold = ledger_.ColdBatch(kColdBatch);
        if (!cold.empty()) PollOnce(cold, absl::ZeroDuration());
      }
      const std::vector<uint64_t> tickets = ledger_.PollBatch(kPollBatch);
      // Nothing to poll, or nothing the server could answer now: the next round a bit later.
      if (tickets.empty() || !PollOnce(tickets, options_.poll_wait)) pause = kIdlePoll;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (poller_stop_) return;
    if (pause > absl::ZeroDuration()) {
      poller_cv_.wait_for(lock, absl::ToChronoNanoseconds(pause), [this] { return poller_stop_; });
      if (poller_stop_) return;
    }
  }
}

int TenantSession::Probe(uint64_t ticket, std::vector<client::Completion>* got) {
  v1::PollRequest request;
  request.add_tickets(ticket);
  request.mutable_wait();  // zero: answer at once
  v1::PollResponse response;
  const grpc::Status s =
      client_->megakernel()->Poll(client_->NewContext(kRpcMargin).get(), request, &response);
  if (s.ok()) {
    for (const v1::Completion& c : response.completions()) got->push_back(client::FromProto(c));
    return 1;
  }
  // INVALID_ARGUMENT: never issued. NOT_FOUND: issued, but nothing is owed to the tenant.
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) return 1;
  return s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 0 : -1;
}

void TenantSession::ProbeTail(absl::Time deadline) {
  // Tickets above the highest known one were issued to calls whose answers were lost. Poll
  // refuses a ticket never issued, so an exponential then binary search finds the last one.
  const uint64_t known = ledger_.max_known();
  std::vector<client::Completion> got;
  int p = Probe(known + 1, &got);
  if (p != 1) return;
  uint64_t issued = known + 1;
  uint64_t not_issued = 0;
  for (uint64_t step = 2; not_issued == 0 && absl::Now() < deadline; step *= 2) {
    p = Probe(issued + step, &got);
    if (p < 0) break;
    if (p == 1) {
      issued += step;
    } else {
      not_issued = issued + step;
    }
  }
  while (not_issued > issued + 1 && absl::Now() < deadline) {
    const uint64_t mid = issued + (not_issued - issued) / 2;
    p = Probe(mid, &got);
    if (p < 0) break;
    (p == 1 ? issued : not_issued) = mid;
  }
  ledger_.ExtendTo(issued);
  ledger_.Record(got);
}

void TenantSession::Finish(absl::Time deadline) {
  if (finished_) return;
  finished_ = true;
  stopping_ = true;
  CancelMarked();
  if (stream_ != nullptr) stream_->Close(deadline);
  std::unique_lock<std::mutex> lock(mu_);
  const auto until = absl::ToChronoTime(deadline);
  progress_.wait_until(lock, until, [this] { return in_flight_.load() == 0; });
  fault_stop_ = true;
  progress_.notify_all();
  if (!progress_.wait_until(lock, until, [this] { return !fault_busy_; }) &&
      cancel_stream_ != nullptr) {
    cancel_stream_->Abort();
  }
  lock.unlock();
  if (fault_thread_.joinable()) fault_thread_.join();
  // With nothing in flight every ticket is settled: the tail above the known ones is all
  // that is left to find.
  if (in_flight_.load() == 0 && !unreachable_.load() && ledger_.calls_in_flight() == 0) {
    ledger_.ScanGaps();
    ProbeTail(deadline);
  }
  lock.lock();
  progress_.wait_until(lock, until,
                       [this] { return ledger_.pending() == 0 || unreachable_.load(); });
  poller_stop_ = true;
  poller_cv_.notify_all();
  lock.unlock();
  if (poller_.joinable()) poller_.join();
  // The tickets that may never be answered, once more: the first batch with a short wait (for
  // slots still running), the rest at once.
  const std::vector<uint64_t> suspect = ledger_.AllSuspects();
  for (size_t i = 0; i < suspect.size() && !unreachable_.load(); i += kColdBatch) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    const std::vector<uint64_t> batch(
        suspect.begin() + static_cast<ptrdiff_t>(i),
        suspect.begin() + static_cast<ptrdiff_t>(std::min(suspect.size(), i + kColdBatch)));
    PollOnce(batch, i == 0 ? std::min(left, kFinalSuspectWait) : absl::ZeroDuration());
  }
}

}  // namespace mk::mkctl::soak
