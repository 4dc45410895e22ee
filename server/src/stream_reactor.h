// The bidirectional Stream: PublishRequests in, CompletionBatches (acks + completions) out.
//
// Threads: gRPC reactions (OnReadDone, OnWriteDone, OnCancel, OnDone) and engine threads
// (OnCompletions, as the CompletionSink of everything this stream publishes). One mutex guards
// the state; gRPC calls made under it never run a reaction inline. Requests are published in
// the order they were read, without the mutex, so engine threads delivering completions never
// wait behind a publish (a CUDA engine's reapers blocked on it throttled packed streams); a
// completion that arrives before its request's ticket range is registered waits in
// `early_` and is delivered right after that request's ack.
//
// Read-ahead: OnReadDone decodes its request (once; everything about it is derived from the
// decoded slots), queues it and starts the next read at once, so gRPC reads request n+1 while
// request n is published. The reaction that finds no publisher running becomes the publisher
// and drains the queue in order (PublishQueued); a reaction that finds one running only
// queues. Nothing blocks, and a stream's requests keep their order.
//
// Ping-pong: starting a read costs the reaction several microseconds. A small
// request (at most kSmallRequest slots, no LOAD_MISS) that arrives with nothing else in flight
// is latency-bound, so its stream reads the next request only once the write that answers it
// is done (OnWriteDone), as an echo server does (docs/performance.md).
// Every accepted slot ends in a completion that is written, so the read always resumes (for a
// disabled tenant's parked slot: once the tenant is enabled again, or the engine drains); a
// LOAD_MISS is excluded because its completion may wait on a file read. The price: a client
// that pipelines requests of a few slots each, with each answered before the next is read,
// gets one request per write cycle; a client that wants throughput sends larger batches.
//
// Packed writes: a write costs about the same whatever it carries, and writing whatever had
// arrived sent about half-full messages. While
// enough completions are outstanding to fill the message being built, and none of them is a
// LOAD_MISS (which may wait on a file read), the write waits for them: the next delivery
// re-checks; messages are then nearly full (docs/performance.md). Completions of a tenant that is
// disabled mid-batch wait with the parked slots they share a message with, until it is enabled
// again or the engine drains.
//
// Flow control: one write in flight; completions queue in `pending_`. When pending plus
// outstanding plus queued slots exceed `max_pending` (or kReadAhead requests wait to be
// published), the reactor stops reading requests (the client then feels TCP backpressure) and
// resumes below half of it. A slow reader therefore bounds what the server buffers.
//
// Lifetime: the reactor is also the sink the engine holds for every outstanding slot, so it
// deletes itself only when gRPC is done with it (OnDone) AND no slot is outstanding. On
// cancellation it cancels its unclaimed slots, and the rest complete normally.
#ifndef MK_SERVER_SRC_STREAM_REACTOR_H_
#define MK_SERVER_SRC_STREAM_REACTOR_H_

#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "auth.h"
#include "mk/engine/engine.h"
#include "mk/v1/megakernel.grpc.pb.h"
#include "tenant_limiter.h"

namespace mk::server {

class StreamReactor final : public grpc::ServerBidiReactor<v1::PublishRequest, v1::CompletionBatch>,
                            public engine::CompletionSink {
 public:
  // Returns a reactor that finishes at once with the caller's error when `caller` failed.
  static grpc::ServerBidiReactor<v1::PublishRequest, v1::CompletionBatch>* Start(
      engine::Engine* engine, const absl::StatusOr<Caller>& caller, size_t max_pending,
      std::unique_ptr<TenantLimiter::Lease> lease);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;
  void OnCompletions(absl::Span<const engine::Completion> batch) override;

 private:
  StreamReactor(engine::Engine* engine, uint32_t tenant, size_t max_pending,
                std::unique_ptr<TenantLimiter::Lease> lease);
  // Publishes the queued requests in order until none is left (the one publisher at a time).
  void PublishQueued();
  struct QueuedRequest;
  // The next request to publish; false when none is left (publishing stops; `release`: the
  // reactor may be deleted now).
  bool TakeQueued(QueuedRequest* request, bool* release);
  // Records a publish's outcome: its ack, its ticket range (or, after a cancel, the tickets to
  // cancel), completions that arrived early. True when the caller must start a write.
  bool AcknowledgeLocked(const QueuedRequest& request,
                         const absl::StatusOr<engine::PublishResult>& published,
                         std::vector<uint64_t>* cancel);
  // Full messages (see Packed writes above): true while the one partial message should wait.
  bool HoldPartialLocked() const;
  // Matches completions to their requests' ranges and queues them for the client. Returns
  // PrepareWriteLocked's answer.
  bool DeliverLocked(absl::Span<const engine::Completion> batch);
  void AppendPackedLocked(const engine::Completion& c);
  void ClearPackedLocked();
  // Fills out_ with the next message when one is due and no write is in flight; true when the
  // caller must then StartWrite(&out_), after releasing mu_: gRPC may serialize and send the
  // 64 KiB message inline, and engine threads delivering completions (and gRPC threads) would
  // wait for mu_ meanwhile. out_ is untouched until OnWriteDone, and no Finish runs while a
  // write is in flight, so the reactor outlives that call.
  bool PrepareWriteLocked();
  void MaybeResumeReadLocked();
  void MaybeFinishLocked();
  // True when this call made the reactor deletable (done and nothing outstanding).
  bool ReleasableLocked();

  engine::Engine* const engine_;
  const uint32_t tenant_;
  const size_t max_pending_;
  // The tenant's place among its open streams; given back when the reactor is deleted.
  const std::unique_ptr<TenantLimiter::Lease> lease_;
  v1::PublishRequest request_;  // written by gRPC between StartRead and OnReadDone
  v1::CompletionBatch out_;     // read by gRPC between StartWrite and OnWriteDone

  std::mutex mu_;                            // guards everything below
  std::vector<engine::Completion> pending_;  // typed mode
  // Packed mode: 64 bytes per completion, in chunks of one message each (the back one
  // filling), so a write takes the front chunk without copying or shifting the rest.
  std::deque<std::string> packed_chunks_;
  size_t packed_bytes_ = 0;
  size_t pending_count() const { return pending_.size() + packed_bytes_ / protocol::kSlotBytes; }
  std::vector<v1::PublishAck> acks_;
  // Requests read but not yet published, in order; at most kReadAhead of them.
  static constexpr size_t kReadAhead = 2;
  static constexpr size_t kSmallRequest = 8;
  bool read_deferred_ = false;  // a ping-pong request left the next read to OnWriteDone
  struct QueuedRequest {
    uint64_t request_id = 0;
    absl::StatusOr<std::vector<engine::SlotPayload>> slots;  // decoded, or why it cannot be
    bool may_wait = false;  // holds a LOAD_MISS, whose completion may wait on a file read
    size_t count() const { return slots.ok() ? slots->size() : 0; }
  };
  std::deque<QueuedRequest> queued_;
  size_t queued_slots_ = 0;
  bool publishing_ = false;  // a reaction is in PublishQueued
  struct OpenRange {
    uint32_t count;      // tickets first .. first + count - 1
    uint32_t remaining;  // not yet complete
    bool may_wait;       // holds a LOAD_MISS, whose completion may wait on a file read
  };
  std::map<uint64_t, OpenRange> open_ranges_;  // by first ticket
  size_t waiting_ranges_ = 0;                  // open ranges with may_wait
  bool rejection_pending_ = false;             // a rejection's ack is queued: write now
  std::vector<engine::Completion> early_;      // completions whose range is not registered yet
  uint64_t outstanding_ = 0;
  int packed_mode_ = -1;  // -1 unknown, 0 typed, 1 packed (from the first request)
  bool write_in_flight_ = false;
  bool read_paused_ = false;
  bool half_closed_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
  bool done_ = false;
  bool released_ = false;
};

}  // namespace mk::server

#endif  // MK_SERVER_SRC_STREAM_REACTOR_H_
