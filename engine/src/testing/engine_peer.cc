#include "mk/engine/testing/engine_peer.h"

#include <cstdlib>

#include "host/engine_base.h"
#include "mk/base/log.h"

namespace mk::engine::testing {

namespace {

// Every engine CreateEngine makes derives from EngineBase; anything else (a test's own fake)
// has no executor to control, and the test is wrong to ask.
host::EngineBase& Base(Engine& engine) {
  auto* base = dynamic_cast<host::EngineBase*>(&engine);
  if (base == nullptr) {
    base::LogError(
        "EnginePeer: this Engine was not made by CreateEngine; only the engine's own backends "
        "have executor controls");
    std::abort();
  }
  return *base;
}

}  // namespace

void EnginePeer::PauseExecution(Engine& engine, bool paused) { Base(engine).PauseExecutor(paused); }

void EnginePeer::SimulateUnresponsiveExecutor(Engine& engine, bool unresponsive) {
  Base(engine).SimulateUnresponsiveExecutor(unresponsive);
}

void EnginePeer::HoldIoReads(Engine& engine, bool hold) { Base(engine).HoldIoReads(hold); }

}  // namespace mk::engine::testing
