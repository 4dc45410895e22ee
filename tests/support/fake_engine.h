// FakeEngine: an Engine that executes nothing, for tests of the server and clients: every
// published slot completes DONE with its argument words as results, either at once or when the
// test releases it, and the test decides what Publish answers. It keeps the Engine contract a
// server relies on (per-tenant tickets, completions to the publish's sink or kept for WaitFor)
// and records what it saw: slots published, and the most slots in flight for one sink at the
// moment of a publish (what a server's flow control must bound).
//
// Thread safety: every method may be called from any thread; sinks are called without the
// fake's lock held.
#ifndef MK_TESTS_SUPPORT_FAKE_ENGINE_H_
#define MK_TESTS_SUPPORT_FAKE_ENGINE_H_

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "mk/engine/engine.h"

namespace mk::testing {

class FakeEngine final : public engine::Engine {
 public:
  enum class Mode { kCompleteAtOnce, kHold };

  void set_mode(Mode mode) {
    std::lock_guard<std::mutex> lock(mu_);
    mode_ = mode;
  }
  // The next Publish answers `status` (publishing nothing).
  void FailNextPublish(absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    next_error_ = std::move(status);
  }
  // Completes every held slot.
  void ReleaseHeld() {
    std::vector<std::pair<engine::CompletionSink*, engine::Completion>> held;
    {
      std::lock_guard<std::mutex> lock(mu_);
      held.swap(held_);
    }
    for (auto& [sink, c] : held) Deliver(sink, c);
  }
  uint64_t published_slots() const {
    std::lock_guard<std::mutex> lock(mu_);
    return published_;
  }
  // The most slots any one sink had in flight when one of its publishes arrived (its own slots
  // included).
  uint64_t max_in_flight_at_publish() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_in_flight_at_publish_;
  }
  // Blocks until at least `n` slots were published or `timeout` passes; false then.
  bool WaitForPublished(uint64_t n, absl::Duration timeout = absl::Seconds(30)) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                             [&] { return published_ >= n; });
  }

  // ---- Engine ----
  absl::Status Start() override { return absl::OkStatus(); }
  absl::StatusOr<engine::PublishResult> Publish(uint32_t tenant,
                                                absl::Span<const engine::SlotPayload> slots,
                                                const engine::PublishOptions& options) override {
    std::vector<engine::Completion> now;
    engine::PublishResult result;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!next_error_.ok()) return std::exchange(next_error_, absl::OkStatus());
      result.first_ticket = tickets_[tenant] + 1;
      result.count = static_cast<uint32_t>(slots.size());
      tickets_[tenant] += slots.size();
      published_ += slots.size();
      uint64_t& in_flight = in_flight_[options.sink];
      in_flight += slots.size();
      max_in_flight_at_publish_ = std::max(max_in_flight_at_publish_, in_flight);
      for (size_t i = 0; i < slots.size(); ++i) {
        engine::Completion c;
        c.tenant = tenant;
        c.opcode = slots[i].opcode;
        c.ticket = result.first_ticket + i;
        c.results = slots[i].args;
        if (mode_ == Mode::kHold) {
          held_.emplace_back(options.sink, c);
        } else {
          now.push_back(c);
        }
      }
      changed_.notify_all();
    }
    for (const engine::Completion& c : now) Deliver(options.sink, c);
    return result;
  }
  absl::StatusOr<std::vector<engine::Completion>> WaitFor(uint32_t tenant,
                                                          absl::Span<const uint64_t> tickets,
                                                          absl::Time deadline) override {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_until(lock, absl::ToChronoTime(deadline), [&] {
      return std::all_of(tickets.begin(), tickets.end(), [&](uint64_t t) {
        return stored_.contains({tenant, t});
      });
    });
    return TakeLocked(tenant, tickets);
  }
  absl::StatusOr<WaitId> WaitForAsync(uint32_t tenant, absl::Span<const uint64_t> tickets,
                                      absl::Time, CompletionsCallback done) override {
    std::vector<engine::Completion> got;
    {
      std::lock_guard<std::mutex> lock(mu_);
      got = TakeLocked(tenant, tickets);  // what is complete now: the fake never waits here
    }
    done(std::move(got));
    return WaitId{0};
  }
  void EndWait(WaitId) override {}
  void ReturnCompletions(absl::Span<const engine::Completion> completions) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const engine::Completion& c : completions) stored_[{c.tenant, c.ticket}] = c;
  }
  absl::StatusOr<uint32_t> Cancel(uint32_t, absl::Span<const uint64_t>) override { return 0; }
  absl::Status SetTenantEnabled(uint32_t, bool) override { return absl::OkStatus(); }
  absl::Status Telemetry(absl::Span<const uint32_t>, engine::TelemetrySnapshot*) override {
    return absl::OkStatus();
  }
  absl::Status ReadDebugLog(engine::DebugLogContents*) override { return absl::OkStatus(); }
  absl::StatusOr<engine::EngineCounters> Drain(absl::Time) override { return counters(); }
  absl::StatusOr<engine::EngineCounters> Shutdown() override { return counters(); }
  absl::StatusOr<uint32_t> RegisterResource(uint32_t, const std::string&, uint64_t,
                                            uint64_t) override {
    return absl::FailedPreconditionError("fake engine: no resources");
  }
  absl::StatusOr<std::vector<engine::ResourceInfo>> ListResources(uint32_t) override {
    return std::vector<engine::ResourceInfo>();
  }
  absl::Status EvictResource(uint32_t, uint32_t) override {
    return absl::FailedPreconditionError("fake engine: no resources");
  }
  absl::StatusOr<engine::BufferInfo> CreateBuffer(uint32_t, uint64_t) override {
    return absl::FailedPreconditionError("fake engine: no buffers");
  }
  absl::Status WriteBuffer(uint32_t, uint32_t, uint64_t, absl::Span<const char>) override {
    return absl::FailedPreconditionError("fake engine: no buffers");
  }
  absl::Status ReadBuffer(uint32_t, uint32_t, uint64_t, absl::Span<char>) override {
    return absl::FailedPreconditionError("fake engine: no buffers");
  }
  absl::Status FreeBuffer(uint32_t, uint32_t) override {
    return absl::FailedPreconditionError("fake engine: no buffers");
  }
  absl::StatusOr<std::vector<engine::BufferInfo>> ListBuffers(uint32_t) override {
    return std::vector<engine::BufferInfo>();
  }
  absl::Status Restart() override { return absl::OkStatus(); }
  engine::EngineCounters counters() const override {
    std::lock_guard<std::mutex> lock(mu_);
    engine::EngineCounters c;
    c.accepted = published_;
    c.done = delivered_;
    c.in_flight = published_ - delivered_;
    return c;
  }
  void Stats(engine::EngineStats* out) const override { out->by_tenant.resize(16); }
  engine::EngineInfo info() const override {
    engine::EngineInfo i;
    i.backend = "fake";
    i.device = "a test double";
    i.ring_slots = 1024;
    i.workers = 1;
    i.max_tenants = 16;
    i.scratch_words = 16;
    return i;
  }

 private:
  struct Key {
    uint32_t tenant;
    uint64_t ticket;
    friend bool operator<(const Key& a, const Key& b) {
      return std::pair(a.tenant, a.ticket) < std::pair(b.tenant, b.ticket);
    }
  };
  void Deliver(engine::CompletionSink* sink, const engine::Completion& c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --in_flight_[sink];
      ++delivered_;
      if (sink == nullptr) stored_[{c.tenant, c.ticket}] = c;
      changed_.notify_all();
    }
    if (sink != nullptr) sink->OnCompletions({&c, 1});
  }
  std::vector<engine::Completion> TakeLocked(uint32_t tenant, absl::Span<const uint64_t> tickets) {
    std::vector<engine::Completion> got;
    for (uint64_t t : tickets) {
      if (auto it = stored_.find({tenant, t}); it != stored_.end()) {
        got.push_back(it->second);
        stored_.erase(it);
      }
    }
    return got;
  }

  mutable std::mutex mu_;
  std::condition_variable changed_;                        // a publish or a delivery
  Mode mode_ = Mode::kCompleteAtOnce;                      // guarded by mu_
  absl::Status next_error_;                                // guarded by mu_
  std::map<uint32_t, uint64_t> tickets_;                   // guarded by mu_
  std::map<engine::CompletionSink*, uint64_t> in_flight_;  // guarded by mu_
  std::vector<std::pair<engine::CompletionSink*, engine::Completion>> held_;  // guarded by mu_
  std::map<Key, engine::Completion> stored_;                                  // guarded by mu_
  uint64_t published_ = 0, delivered_ = 0, max_in_flight_at_publish_ = 0;     // guarded by mu_
};

}  // namespace mk::testing

#endif  // MK_TESTS_SUPPORT_FAKE_ENGINE_H_
