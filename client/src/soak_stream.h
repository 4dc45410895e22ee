// mkctl soak: one tenant's long-lived Stream. Send queues a request (typed or packed slots);
// a writer thread writes the queue in order, a reader thread hands the acks (accepted ticket
// ranges, refusals) and the completions to the ledger.
//
// Threads: Send and Close from the scheduler's thread; the writer and reader threads are the
// lane's own. Finish is called by the reader once the writer has exited (gRPC's sync stream
// allows it only when nothing else is in progress on the stream).
// Lifetime: the client and ledger outlive the lane; the destructor closes it at once.
#ifndef MK_CLIENT_SRC_SOAK_STREAM_H_
#define MK_CLIENT_SRC_SOAK_STREAM_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "mk/client/client.h"
#include "soak_ledger.h"
#include "soak_workload.h"

namespace mk::mkctl::soak {

class StreamLane {
 public:
  struct Hooks {
    // A request was refused (a google.rpc.Code), or accepted though it should have been
    // refused (code 0 with `expected_refusal`).
    std::function<void(int code, bool expected_refusal)> on_refused;
    std::function<void()> on_progress;  // outcomes were recorded
    std::function<void()> on_broken;    // the stream ended before the lane was closed
  };
  // `track_acks`: keep the acknowledged tickets for Cancel.
  StreamLane(client::Client* client, TenantLedger* ledger, bool packed, bool track_acks,
             Hooks hooks);
  ~StreamLane();
  StreamLane(const StreamLane&) = delete;
  StreamLane& operator=(const StreamLane&) = delete;

  // Queues a request; false when the lane is closed or the stream ended. `expect_refusal`: the
  // request must be refused (an unknown opcode).
  bool Send(Batch batch, bool expect_refusal);
  // No more requests: half-closes once the queue is written and waits until the server has
  // ended the stream (delivering every outcome), or cancels it at `deadline`.
  void Close(absl::Time deadline);
  // Waits until every request sent was acknowledged (or the stream ended, or `deadline`).
  bool WaitAcked(absl::Time deadline);
  // The client cancels the stream now (outcomes not received are given up) and waits for the
  // lane to stop. Returns the tickets the stream was acknowledged.
  std::vector<uint64_t> Cancel();
  // Cancels the stream from any thread without waiting (its owner then sees it end).
  void Abort() { stream_->Cancel(); }

 private:
  struct Request {
    uint64_t call = 0;  // the ledger's call id
    std::vector<SlotKind> kinds;
    bool expect_refusal = false;
  };
  void WriterLoop();
  void ReaderLoop();
  void OnBatch(const v1::CompletionBatch& batch);

  client::Client* const client_;
  TenantLedger* const ledger_;
  const bool packed_;
  const bool track_acks_;
  const Hooks hooks_;
  std::unique_ptr<client::Stream> stream_;

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::deque<v1::PublishRequest> queue_;
  std::map<uint64_t, Request> unacked_;  // by request id
  std::vector<uint64_t> acked_;          // tickets accepted on this stream
  uint64_t next_request_id_ = 1;
  bool closing_ = false;
  bool ended_ = false;    // the reader saw the end of the stream
  bool stopped_ = false;  // the reader has finished (Finish called)

  std::thread writer_;
  std::thread reader_;
};

}  // namespace mk::mkctl::soak

#endif  // MK_CLIENT_SRC_SOAK_STREAM_H_
