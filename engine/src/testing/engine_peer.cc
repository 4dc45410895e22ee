#include "mk/engine/testing/engine_peer.h"

#include "host/engine_base.h"

namespace mk::engine::testing {

void EnginePeer::PauseExecution(Engine& engine, bool paused) {
  static_cast<host::EngineBase&>(engine).PauseExecutor(paused);
}

void EnginePeer::SimulateUnresponsiveExecutor(Engine& engine, bool unresponsive) {
  static_cast<host::EngineBase&>(engine).SimulateUnresponsiveExecutor(unresponsive);
}

}  // namespace mk::engine::testing
