// The cuda-emulated engine's teardown paths that the shared suites do not reach: a kernel that
// ignores the stop request is abandoned (Restart answers UNAVAILABLE, the slots it held fail
// with ENGINE_RESTART, nothing executes afterwards), and destroying the engine then neither
// hangs nor leaves a kernel thread reading freed engine memory (this test runs under
// ThreadSanitizer and AddressSanitizer in CI).
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/engine/engine.h"
#include "mk/engine/testing/engine_peer.h"
#include "support/engine_test_util.h"

namespace mk::engine {
namespace {

using testing::RecordingSink;
using testing::Slot;
namespace op = protocol::opcode;

EngineOptions EmulatedOptions() {
  EngineOptions o;
  o.backend = EngineOptions::Backend::kCudaEmulated;
  o.ring_slots = 1024;
  o.workers = 2;
  o.cuda.stop_timeout = absl::Milliseconds(100);  // the unresponsive kernel's wait, kept short
  return o;
}

// Pauses the kernel, publishes `count` NOPs for tenant 1 and waits until all are dispatched:
// they sit CLAIMED in the paused kernel's queues.
void PublishToPausedKernel(Engine& e, uint32_t count, CompletionSink* sink) {
  testing::EnginePeer::PauseExecution(e, true);
  const std::vector<SlotPayload> slots(count, Slot(op::kNop));
  ASSERT_TRUE(e.Publish(1, slots, {sink}).ok());
  TelemetrySnapshot t;
  ASSERT_TRUE(testing::WaitUntil([&] {
    return e.Telemetry({}, &t).ok() && t.occupancy.count(protocol::SlotStatus::kClaimed) == count;
  })) << "dispatched slots wait CLAIMED for the paused kernel";
}

TEST(EmulatedEngineTest, PausedKernelResumesAndRunsWhatWasDispatched) {
  RecordingSink sink;  // outlives the engine: its last delivery may still be returning
  auto e = testing::MakeStarted(EmulatedOptions());
  ASSERT_NE(e, nullptr);
  ASSERT_NO_FATAL_FAILURE(PublishToPausedKernel(*e, 8, &sink));
  EXPECT_TRUE(sink.completions().empty()) << "a paused kernel runs nothing";
  testing::EnginePeer::PauseExecution(*e, false);
  ASSERT_TRUE(sink.WaitForCount(8));
  for (const Completion& c : sink.completions()) EXPECT_EQ(c.status, CompletionStatus::kDone);
}

TEST(EmulatedEngineTest, RestartRecoversAStalledKernel) {
  RecordingSink sink;  // outlives the engine: its last delivery may still be returning
  auto e = testing::MakeStarted(EmulatedOptions());
  ASSERT_NE(e, nullptr);
  ASSERT_NO_FATAL_FAILURE(PublishToPausedKernel(*e, 8, &sink));
  ASSERT_TRUE(e->Restart().ok());
  ASSERT_TRUE(sink.WaitForCount(8));
  for (const Completion& c : sink.completions()) {
    EXPECT_EQ(c.status, CompletionStatus::kFault);
    EXPECT_EQ(c.fault_code, static_cast<uint32_t>(protocol::FaultCode::kEngineRestart));
  }
  const Completion after = testing::RunOne(*e, Slot(op::kNop));
  EXPECT_EQ(after.status, CompletionStatus::kDone) << "the relaunched kernel serves";
}

TEST(EmulatedEngineTest, UnresponsiveKernelIsAbandonedAndTheEngineStillDestroysCleanly) {
  RecordingSink sink;  // both outlive the engine: its last delivery may still be returning
  RecordingSink late;
  auto e = testing::MakeStarted(EmulatedOptions());
  ASSERT_NE(e, nullptr);
  ASSERT_NO_FATAL_FAILURE(PublishToPausedKernel(*e, 10, &sink));
  testing::EnginePeer::SimulateUnresponsiveExecutor(*e, true);

  const absl::Status restarted = e->Restart();
  EXPECT_EQ(restarted.code(), absl::StatusCode::kUnavailable) << restarted;
  EXPECT_THAT(std::string(restarted.message()),
              ::testing::HasSubstr("cuda-emulated: the megakernel does not stop"));
  ASSERT_TRUE(sink.WaitForCount(10));
  for (const Completion& c : sink.completions()) {
    EXPECT_EQ(c.status, CompletionStatus::kFault);
    EXPECT_EQ(c.fault_code, static_cast<uint32_t>(protocol::FaultCode::kEngineRestart));
  }

  const absl::Status again = e->Restart();
  EXPECT_EQ(again.code(), absl::StatusCode::kUnavailable) << "no kernel to relaunch: " << again;
  EXPECT_THAT(std::string(again.message()), ::testing::HasSubstr("could not be recovered"));

  // Nothing executes any more: a new slot is accepted but never runs; Shutdown fails it.
  const SlotPayload nop = Slot(op::kNop);
  ASSERT_TRUE(e->Publish(1, {&nop, 1}, {&late}).ok());
  const auto shut = e->Shutdown();
  ASSERT_TRUE(late.WaitForCount(1));
  EXPECT_EQ(late.completions()[0].status, CompletionStatus::kFault);
  if (shut.ok()) EXPECT_EQ(shut->in_flight, 0u);
  e.reset();  // returns, and no kernel thread outlives the engine (TSan/ASan would report it)
}

}  // namespace
}  // namespace mk::engine
