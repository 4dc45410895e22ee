// Test-only controls of an engine's executor, reached from outside the Engine interface so that
// production callers never see them. Link mk::engine_testing to use them.
//
// Thread safety: as the Engine methods (any thread).
#ifndef MK_ENGINE_TESTING_ENGINE_PEER_H_
#define MK_ENGINE_TESTING_ENGINE_PEER_H_

#include "mk/engine/engine.h"

namespace mk::engine::testing {

class EnginePeer {
 public:
  // Stops the executor from claiming work (a stall the watchdog sees), until called with false
  // or the engine restarts. On the CUDA engine the kernel itself stops claiming: dispatched
  // slots wait CLAIMED.
  static void PauseExecution(Engine& engine, bool paused);
  // The executor no longer hears stop requests, as a hung GPU kernel would not, so a Restart
  // must take the path for an executor that does not stop (the CUDA engine abandons the kernel
  // and answers UNAVAILABLE). Engines whose executors always stop ignore it.
  static void SimulateUnresponsiveExecutor(Engine& engine, bool unresponsive);
  // Resource reads the engine starts wait (holding their io queue slots) until called with
  // false, which starts them all: fills the io queue on purpose.
  static void HoldIoReads(Engine& engine, bool hold);
};

}  // namespace mk::engine::testing

#endif  // MK_ENGINE_TESTING_ENGINE_PEER_H_
