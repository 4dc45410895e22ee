// The slot state machine (docs/protocol.md, "Ring slot"): which status moves the host and an
// engine may make. Every transition not listed is a bug. The ring checks the moves it makes
// against it (PartitionedRing: its producer port, and every outcome and status change in builds
// with assertions, such as the ThreadSanitizer preset), so an illegal move stops the process
// where it happens instead of surfacing as a lost or doubled completion later.
#ifndef MK_ENGINE_SRC_HOST_SLOT_STATE_MACHINE_H_
#define MK_ENGINE_SRC_HOST_SLOT_STATE_MACHINE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "mk/engine/protocol.h"

namespace mk::engine::host {

// Who performs a status transition; the protocol allows each side different moves. The CUDA
// engine's host half writes outcomes on the kernel's behalf: those are the engine's moves.
enum class Actor { kHost, kEngine };

// OK when `actor` may move a slot from `from` to `to`; FAILED_PRECONDITION naming both states
// otherwise; INVALID_ARGUMENT for a value that is no slot status.
absl::Status CheckTransition(protocol::SlotStatus from, protocol::SlotStatus to, Actor actor);

// Logs the illegal move and aborts (MK_DCHECK_TRANSITION's check).
void AbortOnIllegalTransition(protocol::SlotStatus from, protocol::SlotStatus to, Actor actor,
                              uint32_t slot_index);

}  // namespace mk::engine::host

// In builds with assertions (no NDEBUG, e.g. the ThreadSanitizer preset): aborts on a move the
// state machine forbids. Otherwise nothing is evaluated.
#ifdef NDEBUG
#define MK_DCHECK_TRANSITION(from, to, actor, slot_index) ((void)0)
#else
#define MK_DCHECK_TRANSITION(from, to, actor, slot_index) \
  ::mk::engine::host::AbortOnIllegalTransition(from, to, actor, slot_index)
#endif

#endif  // MK_ENGINE_SRC_HOST_SLOT_STATE_MACHINE_H_
