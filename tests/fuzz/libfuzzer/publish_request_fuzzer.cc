// libFuzzer target: the translation of a wire PublishRequest into engine slots
// (server/src/convert.h: DecodePublish), then the engine's validation; and the completions the
// server sends back (ToProto, AppendPacked).
//
// Input: a serialized mk.v1.PublishRequest (protobuf wire format: typed slots or packed_slots;
// dict/publish_request.dict holds the field tags).
// Properties:
// - DecodePublish accepts exactly a non-empty batch: typed slots of at most 12 argument words,
//   or a whole number of 64-byte images; a refusal is INVALID_ARGUMENT naming the slot (typed)
//   or the byte count (packed);
// - each payload is its slot: opcode, priority (NORMAL when unset), the given argument words
//   then zeros, tenant 0 (the server never takes the tenant from the wire);
// - typed and packed forms of the same slots translate identically (each accepted request is
//   re-sent in the other form);
// - the engine's ValidatePublish takes any translated batch without crashing;
// - a completion made of each payload's words survives AppendPacked -> DecodePackedCompletion
//   and ToProto with its ticket, status and words as the protocol lays them out.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "convert.h"
#include "fuzz/libfuzzer/fuzz_support.h"
#include "host/publish_validation.h"
#include "mk/proto/packed_codec.h"
#include "mk/v1/megakernel.pb.h"

namespace mk::server {
namespace {

using engine::SlotPayload;

bool SameSlots(const std::vector<SlotPayload>& a, const std::vector<SlotPayload>& b) {
  return a == b;
}

void CheckTyped(const v1::PublishRequest& request,
                const absl::StatusOr<std::vector<SlotPayload>>& out) {
  const auto& slots = request.slots().slots();
  int first_long = -1;
  for (int i = 0; i < slots.size() && first_long < 0; ++i) {
    if (slots[i].args_size() > static_cast<int>(protocol::kArgWords)) first_long = i;
  }
  if (first_long >= 0) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(out.status()) &&
                      absl::StartsWith(out.status().message(), absl::StrCat("slot ", first_long)),
                  out.status().ToString(), "; slot ", first_long, " has too many args");
    return;
  }
  if (slots.empty()) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(out.status()), out.status().ToString());
    return;
  }
  MK_FUZZ_CHECK(out.ok() && out->size() == static_cast<size_t>(slots.size()),
                out.status().ToString());
  for (int i = 0; i < slots.size(); ++i) {
    const v1::Slot& s = slots[i];
    const SlotPayload& p = (*out)[i];
    MK_FUZZ_CHECK(p.opcode == s.opcode() && p.tenant == 0, "slot ", i);
    MK_FUZZ_CHECK(p.priority == (s.has_priority() ? s.priority() : protocol::kDefaultPriority),
                  "slot ", i, " priority ", p.priority);
    for (int a = 0; a < static_cast<int>(protocol::kArgWords); ++a) {
      MK_FUZZ_CHECK(p.args[a] == (a < s.args_size() ? s.args(a) : 0), "slot ", i, " arg ", a);
    }
  }
  // The same slots, packed.
  std::string bytes(out->size() * proto::kPackedBytes, '\0');
  for (size_t i = 0; i < out->size(); ++i) {
    const SlotPayload& p = (*out)[i];
    proto::EncodePackedSlot(proto::PackedSlot{p.opcode, p.priority, p.args},
                            bytes.data() + i * proto::kPackedBytes);
  }
  v1::PublishRequest packed;
  packed.set_packed_slots(bytes);
  const auto again = DecodePublish(packed);
  MK_FUZZ_CHECK(again.ok() && SameSlots(*again, *out), "packed form: ", again.status().ToString());
}

void CheckPacked(const v1::PublishRequest& request,
                 const absl::StatusOr<std::vector<SlotPayload>>& out) {
  const std::string& bytes = request.packed_slots();
  if (bytes.size() % proto::kPackedBytes != 0) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(out.status()) &&
                      absl::StrContains(out.status().message(), absl::StrCat(bytes.size())),
                  out.status().ToString());
    return;
  }
  if (bytes.empty()) {
    MK_FUZZ_CHECK(absl::IsInvalidArgument(out.status()), out.status().ToString());
    return;
  }
  MK_FUZZ_CHECK(out.ok() && out->size() == bytes.size() / proto::kPackedBytes,
                out.status().ToString());
  for (size_t i = 0; i < out->size(); ++i) {
    const proto::PackedWords w = proto::LoadPackedWords(bytes.data() + i * proto::kPackedBytes);
    const SlotPayload& p = (*out)[i];
    MK_FUZZ_CHECK(p.opcode == w[protocol::kWordOpcode] &&
                      p.priority == w[protocol::kWordPriority] && p.tenant == 0,
                  "slot ", i, " header");
    for (uint32_t a = 0; a < protocol::kArgWords; ++a) {
      MK_FUZZ_CHECK(p.args[a] == w[protocol::kWordArg0 + a], "slot ", i, " arg ", a);
    }
  }
  // The same slots, typed.
  v1::PublishRequest typed;
  for (const SlotPayload& p : *out) {
    v1::Slot* s = typed.mutable_slots()->add_slots();
    s->set_opcode(p.opcode);
    s->set_priority(p.priority);
    s->mutable_args()->Add(p.args.begin(), p.args.end());
  }
  const auto again = DecodePublish(typed);
  MK_FUZZ_CHECK(again.ok() && SameSlots(*again, *out), "typed form: ", again.status().ToString());
}

// A completion of each payload, the way the server sends it back.
void CheckCompletions(const v1::PublishRequest& request, const std::vector<SlotPayload>& slots) {
  for (size_t i = 0; i < slots.size() && i < 64; ++i) {
    const SlotPayload& p = slots[i];
    engine::Completion c;
    c.opcode = p.opcode;
    c.ticket = request.request_id() * 0x9E3779B97F4A7C15ull + i;
    c.status = static_cast<engine::CompletionStatus>(1 + p.args[0] % 3);
    c.fault_code = p.args[1];
    c.fault_detail = p.args[2];
    c.results = p.args;

    char image[proto::kPackedBytes];
    AppendPacked(c, image);
    const absl::StatusOr<proto::PackedCompletion> packed = proto::DecodePackedCompletion(image, i);
    MK_FUZZ_CHECK(packed.ok() && packed->ticket == c.ticket, packed.status().ToString());
    std::array<uint32_t, protocol::kArgWords> words{};
    v1::Completion wire;
    ToProto(c, &wire);
    MK_FUZZ_CHECK(wire.ticket() == c.ticket, "ticket");
    switch (c.status) {
      case engine::CompletionStatus::kDone:
        MK_FUZZ_CHECK(packed->status == proto::PackedStatus::kDone, "packed status");
        MK_FUZZ_CHECK(wire.status() == v1::COMPLETION_STATUS_DONE &&
                          std::equal(wire.result().begin(), wire.result().end(), c.results.begin(),
                                     c.results.end()),
                      "typed DONE");
        words = c.results;
        break;
      case engine::CompletionStatus::kFault:
        MK_FUZZ_CHECK(packed->status == proto::PackedStatus::kFault, "packed status");
        MK_FUZZ_CHECK(wire.status() == v1::COMPLETION_STATUS_FAULT &&
                          wire.fault_code() == c.fault_code &&
                          wire.fault_detail() == c.fault_detail && wire.result().empty(),
                      "typed FAULT");
        words[0] = c.fault_code;
        words[1] = c.fault_detail;
        break;
      case engine::CompletionStatus::kCancelled:
        MK_FUZZ_CHECK(packed->status == proto::PackedStatus::kCancelled, "packed status");
        MK_FUZZ_CHECK(wire.status() == v1::COMPLETION_STATUS_CANCELLED && wire.result().empty(),
                      "typed CANCELLED");
        break;
    }
    MK_FUZZ_CHECK(packed->words == words, "packed completion words");
  }
}

}  // namespace
}  // namespace mk::server

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mk::v1::PublishRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return -1;  // not in the corpus
  const auto out = mk::server::DecodePublish(request);
  switch (request.payload_case()) {
    case mk::v1::PublishRequest::kSlots:
      mk::server::CheckTyped(request, out);
      break;
    case mk::v1::PublishRequest::kPackedSlots:
      mk::server::CheckPacked(request, out);
      break;
    case mk::v1::PublishRequest::PAYLOAD_NOT_SET:
      MK_FUZZ_CHECK(absl::IsInvalidArgument(out.status()), out.status().ToString());
      break;
  }
  if (out.ok()) {
    (void)mk::engine::host::ValidatePublish(*out);
    mk::server::CheckCompletions(request, *out);
  }
  return 0;
}
