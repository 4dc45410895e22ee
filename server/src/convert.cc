#include "convert.h"

#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "mk/engine/ring_view.h"

namespace mk::server {

namespace {
constexpr uint32_t kPackedCancelled = 0xFFFFFFFFu;

void PutLe32(uint32_t v, char* p) {
  p[0] = static_cast<char>(v & 0xFF);
  p[1] = static_cast<char>((v >> 8) & 0xFF);
  p[2] = static_cast<char>((v >> 16) & 0xFF);
  p[3] = static_cast<char>(v >> 24);
}
}  // namespace

absl::StatusOr<std::vector<engine::SlotPayload>> DecodePublish(const v1::PublishRequest& request) {
  std::vector<engine::SlotPayload> out;
  switch (request.payload_case()) {
    case v1::PublishRequest::kSlots: {
      const auto& slots = request.slots().slots();
      out.resize(slots.size());
      for (int i = 0; i < slots.size(); ++i) {
        const v1::Slot& s = slots[i];
        if (s.args_size() > static_cast<int>(protocol::kArgWords)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "slot ", i, ": args has ", s.args_size(), " words; a slot carries at most 12"));
        }
        out[i].opcode = s.opcode();
        out[i].priority = s.has_priority() ? s.priority() : protocol::kDefaultPriority;
        std::copy(s.args().begin(), s.args().end(), out[i].args.begin());
      }
      break;
    }
    case v1::PublishRequest::kPackedSlots: {
      const std::string& bytes = request.packed_slots();
      if (bytes.size() % protocol::kSlotBytes != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "packed_slots: ", bytes.size(), " bytes is not a whole number of 64-byte slots"));
      }
      // Little-endian host: the 64-byte images copy straight into payloads (the length was
      // checked above, so no per-slot decode can fail).
      static_assert(std::endian::native == std::endian::little);
      out.resize(bytes.size() / protocol::kSlotBytes);
      for (size_t i = 0; i < out.size(); ++i) {
        uint32_t words[protocol::kSlotWords];
        std::memcpy(words, bytes.data() + i * protocol::kSlotBytes, protocol::kSlotBytes);
        out[i].opcode = words[protocol::kWordOpcode];
        out[i].priority = words[protocol::kWordPriority];
        std::memcpy(out[i].args.data(), words + protocol::kWordArg0, sizeof(out[i].args));
      }
      break;
    }
    case v1::PublishRequest::PAYLOAD_NOT_SET:
      break;
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        "publish: no slots; set `slots` (typed) or `packed_slots` (N x 64 bytes)");
  }
  return out;
}

void ToProto(const engine::Completion& c, v1::Completion* out) {
  out->set_ticket(c.ticket);
  switch (c.status) {
    case engine::CompletionStatus::kDone:
      out->set_status(v1::COMPLETION_STATUS_DONE);
      out->mutable_result()->Add(c.results.begin(), c.results.end());
      break;
    case engine::CompletionStatus::kFault:
      out->set_status(v1::COMPLETION_STATUS_FAULT);
      out->set_fault_code(c.fault_code);
      out->set_fault_detail(c.fault_detail);
      break;
    case engine::CompletionStatus::kCancelled:
      out->set_status(v1::COMPLETION_STATUS_CANCELLED);
      break;
  }
}

void AppendPacked(const engine::Completion& c, char* p) {
  std::memset(p, 0, protocol::kSlotBytes);
  uint32_t status = kPackedCancelled;
  if (c.status == engine::CompletionStatus::kDone) status = 3;
  if (c.status == engine::CompletionStatus::kFault) status = 7;
  PutLe32(status, p);
  PutLe32(static_cast<uint32_t>(c.ticket), p + 4 * protocol::kWordTenant);
  PutLe32(static_cast<uint32_t>(c.ticket >> 32), p + 4 * protocol::kWordPriority);
  if (c.status == engine::CompletionStatus::kFault) {
    PutLe32(c.fault_code, p + 4 * protocol::kWordArg0);
    PutLe32(c.fault_detail, p + 4 * (protocol::kWordArg0 + 1));
  } else {
    for (uint32_t i = 0; i < protocol::kArgWords; ++i) {
      PutLe32(c.results[i], p + 4 * (protocol::kWordArg0 + i));
    }
  }
}

void ToProto(const engine::TelemetrySnapshot& t, const engine::WatchdogReport& watchdog,
             const engine::EngineInfo& info, v1::Telemetry* out) {
  auto* occ = out->mutable_occupancy();
  for (uint32_t s = 0; s < protocol::kSlotStatusCount; ++s) {
    (*occ->mutable_by_status())[engine::SlotStatusName(static_cast<protocol::SlotStatus>(s))] =
        t.occupancy.by_status[s];
  }
  occ->set_total(t.occupancy.total);
  occ->set_queue_depth(t.occupancy.queue_depth);
  out->set_done_count(t.control.done_count);
  out->set_epoch(t.control.epoch);
  for (const auto& [op, n] : t.control.opcode_metrics) (*out->mutable_opcode_metrics())[op] = n;
  out->mutable_tenant_fairness()->Add(t.control.tenant_fairness.begin(),
                                      t.control.tenant_fairness.end());
  out->mutable_priority_fairness()->Add(t.control.priority_fairness.begin(),
                                        t.control.priority_fairness.end());
  auto* w = out->mutable_watchdog();
  w->set_done_delta(watchdog.done_delta);
  w->set_queue_depth(watchdog.queue_depth);
  w->set_faults(watchdog.faults);
  w->set_suspected_stall(watchdog.suspected_stall);
  auto* e = out->mutable_engine();
  e->set_backend(info.backend);
  e->set_device(info.device);
  e->set_ring_slots(info.ring_slots);
  e->set_workers(info.workers);
}

}  // namespace mk::server
