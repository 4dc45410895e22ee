// Conversions between the wire messages (mk.v1) and the engine's types, with the request
// validation that must happen before anything reaches the ring.
#ifndef MK_SERVER_SRC_CONVERT_H_
#define MK_SERVER_SRC_CONVERT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "mk/engine/engine.h"
#include "mk/engine/telemetry.h"
#include "mk/v1/megakernel.pb.h"

namespace mk::server {

// Typed or packed slots -> payloads. INVALID_ARGUMENT names the slot and field. The engine
// validates opcodes and priorities; this checks what only the wire form can get wrong.
absl::StatusOr<std::vector<engine::SlotPayload>> DecodePublish(const v1::PublishRequest& request);

void ToProto(const engine::Completion& c, v1::Completion* out);
// Writes the 64-byte packed form of `c` (see CompletionBatch.packed_completions) at `out`.
void AppendPacked(const engine::Completion& c, char* out);

void ToProto(const engine::TelemetrySnapshot& t, const engine::WatchdogReport& watchdog,
             const engine::EngineInfo& info, v1::Telemetry* out);

}  // namespace mk::server

#endif  // MK_SERVER_SRC_CONVERT_H_
