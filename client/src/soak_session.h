// mkctl soak: one tenant's traffic against one server incarnation (TenantSession), and what the
// soak sends (the workload: valid slots, and the faults injected from the client side).
//
// A session owns the tenant's client (its channel and token), its ledger, and its threads:
//   - a poller, which collects the outcomes of tickets published without a sink (and the gap
//     tickets the ledger finds) with Poll;
//   - a Stream lane (soak_stream.h): a writer and a reader thread;
//   - a fault thread, which runs the slower client-side faults one at a time (a Stream it
//     cancels once its requests are acknowledged, resource registration retries).
// Publishes are asynchronous (gRPC's callback API), so the open-loop scheduler never waits for
// the server; callbacks run on gRPC's threads and only record.
//
// Lifetime: Start once, Issue from one thread (the scheduler) until Finish, which reconciles
// what the incarnation owes and stops every thread; the destructor joins whatever is left.
#ifndef MK_CLIENT_SRC_SOAK_SESSION_H_
#define MK_CLIENT_SRC_SOAK_SESSION_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "mk/client/client.h"
#include "soak_ledger.h"

namespace mk::mkctl::soak {

class StreamLane;

// What the open loop asks a session to do, one request each.
enum class Action {
  kPublishWait,     // valid slots, Publish with a wait: outcomes in the response
  kPublishNoWait,   // valid slots, Publish without a wait: outcomes by Poll
  kStream,          // valid slots on the tenant's Stream
  kResource,        // LOAD_MISS and / or CHECKSUM of the tenant's registered files
  kUnknownOpcode,   // a batch with an opcode nobody registered: INVALID_ARGUMENT, none accepted
  kBadResource,     // LOAD_MISS / CHECKSUM of an unregistered id: FAULT RESOURCE_NOT_FOUND
  kCancelPublish,   // a waiting Publish the client cancels at the next tick
  kExpireDeadline,  // a waiting Publish whose deadline passes within 20..500 us
  kCancelPoll,      // a Poll the client cancels at the next tick (outcomes stay pollable)
  kCancelStream,    // a Stream cancelled once its requests are acknowledged
};
inline constexpr int kActionCount = 10;
const char* ActionName(Action a);

// A session's counters, summed over sessions for the report.
struct SessionReport {
  uint64_t issued = 0;         // requests the open loop started
  uint64_t shed = 0;           // requests not started: too many of the session's calls in flight
  uint64_t publish_calls = 0;  // publish calls and stream requests answered
  std::map<int, uint64_t> rejected_by_code;  // publishes refused, by gRPC status code
  uint64_t unexpected_rejections = 0;        // refused for a reason the soak did not provoke
  uint64_t unknown_opcode_accepted = 0;      // must stay 0
  uint64_t poll_errors = 0;                  // Poll answered with an unexpected error
  uint64_t registrations_failed = 0;         // (re)registrations refused: a file was mid-fault
  uint64_t faults_injected[kActionCount] = {};
  std::vector<std::string> examples;
  void Add(const SessionReport& other);
};

struct SessionOptions {
  std::vector<std::string> resources;  // files of the tenant's folder to register
  absl::Duration publish_wait = absl::Seconds(30);
  absl::Duration poll_wait = absl::Milliseconds(100);
  uint32_t max_in_flight = 256;  // async calls of this session at once
  bool packed_stream = false;    // the Stream lane sends packed slots
  uint64_t seed = 1;
};

class TenantSession {
 public:
  // `server_gone`: the incarnation's flag, set (through `on_server_gone`) by whichever session
  // sees the server go first; it outlives the session.
  TenantSession(uint32_t tenant, std::unique_ptr<client::Client> client, SessionOptions options,
                const std::atomic<bool>* server_gone, std::function<void()> on_server_gone);
  ~TenantSession();
  TenantSession(const TenantSession&) = delete;
  TenantSession& operator=(const TenantSession&) = delete;

  // Registers the resources and starts the threads.
  void Start();
  // One closed-loop request (calibration): a waiting Publish of valid slots; false on error.
  bool CallOnce(std::mt19937_64& rng, uint32_t* slots);
  // Starts one open-loop request (never blocks on the server).
  void Issue(Action action, std::mt19937_64& rng);
  // Cancels the calls the previous ticks marked for cancellation (kCancelPublish, kCancelPoll).
  void CancelMarked();
  // Housekeeping, about once a second: registers resources whose registration failed.
  void Maintain();
  // Ends the incarnation: no more Issue; waits (until `deadline`) for calls in flight, finds the
  // tickets whose answers were lost, collects every outcome the server still owes, closes the
  // Stream, and stops the threads. Call after the scheduler stopped.
  void Finish(absl::Time deadline);
  LedgerSummary Summary() const { return ledger_.Summarize(); }
  SessionReport Report() const;
  uint32_t tenant() const { return tenant_; }
  uint64_t in_flight() const { return in_flight_.load(); }

 private:
  struct Call;
  // Starts an asynchronous Publish. `mark_cancel`: TryCancel it at the next tick; `timeout`:
  // the call's deadline (else publish_wait + 30 s).
  void StartPublish(const std::vector<client::Slot>& slots, std::vector<SlotKind> kinds,
                    absl::Duration wait, Action action, bool packed, bool mark_cancel,
                    absl::Duration timeout);
  void OnPublishDone(const std::shared_ptr<Call>& call, const grpc::Status& status);
  void StartCancelledPoll();
  void PollerLoop();
  // One Poll; records what it returns. False when it got nothing the server could answer (the
  // server is unreachable, or owes the tenant nothing).
  bool PollOnce(const std::vector<uint64_t>& tickets, absl::Duration wait);
  // Poll of one ticket without waiting: 1 issued (its outcome, if any, goes to *got), 0 never
  // issued, -1 the server did not answer.
  int Probe(uint64_t ticket, std::vector<client::Completion>* got);
  // Finds the last ticket the server issued to this tenant (Poll probes) and hands the tickets
  // above the highest known one to the ledger. Needs no call in flight.
  void ProbeTail(absl::Time deadline);
  void RegisterResources();
  void CancelStreamJob(std::mt19937_64 rng);
  // Runs `job` on the fault thread unless one is running (then false).
  bool RunOnFaultThread(std::function<void()> job);
  void FaultLoop();
  void Reject(Action action, const grpc::Status& status);
  void Note(const std::string& what);
  void NotifyProgress();
  void CallEnded();

  const uint32_t tenant_;
  const std::unique_ptr<client::Client> client_;
  const SessionOptions options_;
  const std::atomic<bool>* const server_gone_;
  const std::function<void()> on_server_gone_;
  TenantLedger ledger_;
  std::unique_ptr<StreamLane> stream_;

  std::atomic<uint64_t> in_flight_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> unreachable_{false};  // a Poll found the server gone

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable progress_;
  std::vector<uint32_t> resource_ids_;  // by index of options_.resources; 0: not registered
  std::vector<std::shared_ptr<Call>> to_cancel_;
  std::deque<std::function<void()>> fault_jobs_;
  bool fault_busy_ = false;
  bool fault_stop_ = false;
  bool poller_stop_ = false;
  std::condition_variable poller_cv_;    // wakes the poller to stop
  StreamLane* cancel_stream_ = nullptr;  // the fault thread's Stream to cancel, while open
  bool finished_ = false;
  SessionReport report_;

  std::thread poller_;
  std::thread fault_thread_;
};

}  // namespace mk::mkctl::soak

#endif  // MK_CLIENT_SRC_SOAK_SESSION_H_
