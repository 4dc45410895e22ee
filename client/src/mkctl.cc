// mkctl: the command-line client of megakerneld.
//   mkctl publish | poll | telemetry | resources | bench | top   (each with --help)
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "mkctl_common.h"

namespace mk::mkctl {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "mkctl: %s\n", s.ToString().c_str());
  return 1;
}

const char* StatusName(client::Completion::Status s) {
  switch (s) {
    case client::Completion::Status::kDone:
      return "DONE";
    case client::Completion::Status::kFault:
      return "FAULT";
    case client::Completion::Status::kCancelled:
      return "CANCELLED";
  }
  return "?";
}

void PrintCompletions(const std::vector<client::Completion>& completions) {
  for (const client::Completion& c : completions) {
    if (c.status == client::Completion::Status::kFault) {
      std::printf("ticket %llu FAULT code=%u detail=%u\n",
                  static_cast<unsigned long long>(c.ticket), c.fault_code, c.fault_detail);
    } else {
      std::printf("ticket %llu %s results=[%s]\n", static_cast<unsigned long long>(c.ticket),
                  StatusName(c.status), absl::StrJoin(c.results, " ").c_str());
    }
  }
}

int Publish(const std::vector<std::string>& argv) {
  const auto specs = WithConnectionFlags({
      {"opcode", "0", "opcode (0 NOP, 1 STORE_U32, 2 ATOMIC_ADD, 3 LOAD_U32, ...)"},
      {"args", "", "comma-separated argument words (at most 12)"},
      {"priority", "2", "0 CRITICAL .. 4 IDLE"},
      {"count", "1", "how many copies of the slot to publish in one batch"},
      {"wait", "0s", "wait up to this long for the results (0s: return tickets at once)"},
  });
  auto args = Args::Parse(argv, specs);
  if (!args.ok()) return Fail(args.status());
  if (args->help()) {
    PrintHelp("publish",
              "Publishes a batch of slots; prints the tickets and, with --wait, results.", specs);
    return 0;
  }
  auto opcode = args->GetUint("opcode");
  auto words = args->GetUintList("args");
  auto priority = args->GetUint("priority");
  auto count = args->GetUint("count");
  auto wait = args->GetDuration("wait");
  for (const absl::Status& s :
       {opcode.status(), words.status(), priority.status(), count.status(), wait.status()}) {
    if (!s.ok()) return Fail(s);
  }
  auto c = ConnectFromArgs(*args);
  if (!c.ok()) return Fail(c.status());
  std::vector<client::Slot> slots(*count, client::Slot{static_cast<uint32_t>(*opcode),
                                                       static_cast<uint32_t>(*priority), *words});
  auto r = (*c)->Publish(slots, *wait);
  if (!r.ok()) return Fail(r.status());
  std::printf("published %u slots: tickets %llu..%llu\n", r->count,
              static_cast<unsigned long long>(r->first_ticket),
              static_cast<unsigned long long>(r->first_ticket + r->count - 1));
  PrintCompletions(r->completions);
  return 0;
}

int Poll(const std::vector<std::string>& argv) {
  const auto specs = WithConnectionFlags({
      {"tickets", "", "comma-separated tickets from publish"},
      {"wait", "1s", "wait up to this long for them to complete"},
  });
  auto args = Args::Parse(argv, specs);
  if (!args.ok()) return Fail(args.status());
  if (args->help()) {
    PrintHelp("poll", "Collects the completions of tickets (each can be collected once).", specs);
    return 0;
  }
  auto tickets = args->GetUint64List("tickets");
  if (!tickets.ok()) return Fail(tickets.status());
  auto wait = args->GetDuration("wait");
  if (!wait.ok()) return Fail(wait.status());
  auto c = ConnectFromArgs(*args);
  if (!c.ok()) return Fail(c.status());
  auto got = (*c)->Poll(*tickets, *wait);
  if (!got.ok()) return Fail(got.status());
  PrintCompletions(*got);
  std::printf("%zu of %zu tickets complete\n", got->size(), tickets->size());
  return 0;
}

int Telemetry(const std::vector<std::string>& argv) {
  const auto specs = WithConnectionFlags({
      {"window_opcodes", "", "comma-separated opcodes grouped into ticketed windows"},
  });
  auto args = Args::Parse(argv, specs);
  if (!args.ok()) return Fail(args.status());
  if (args->help()) {
    PrintHelp("telemetry", "Prints one telemetry snapshot (occupancy, counters, watchdog).", specs);
    return 0;
  }
  auto windows = args->GetUintList("window_opcodes");
  if (!windows.ok()) return Fail(windows.status());
  auto c = ConnectFromArgs(*args);
  if (!c.ok()) return Fail(c.status());
  auto t = (*c)->GetTelemetry(*windows);
  if (!t.ok()) return Fail(t.status());
  std::printf("%s", t->DebugString().c_str());
  return 0;
}

int Resources(const std::vector<std::string>& argv) {
  const auto specs = WithConnectionFlags({
      {"register", "",
       "register this file (relative to your folder of the server's --resource_root, "
       "tenants/<your tenant id>/)"},
      {"shared", "false",
       "with --register or --evict: a file of the root's shared/ folder (needs the admin token)"},
      {"offset", "0", "with --register: first byte"},
      {"length", "0", "with --register: bytes (0 = to the end of the file)"},
      {"evict", "", "evict this resource id"},
  });
  auto args = Args::Parse(argv, specs);
  if (!args.ok()) return Fail(args.status());
  if (args->help()) {
    PrintHelp("resources",
              "Lists your resources for LOAD_MISS; --register=PATH adds one, --evict=ID drops one.",
              specs);
    return 0;
  }
  auto c = ConnectFromArgs(*args);
  if (!c.ok()) return Fail(c.status());
  // The generated Megakernel service client (gRPC names it Stub); calls carry a 10 s deadline.
  v1::Megakernel::Stub* service = (*c)->megakernel();
  auto context = [&] { return (*c)->NewContext(absl::Seconds(10)); };
  if (!args->Get("register").empty()) {
    auto offset = args->GetUint("offset");
    auto length = args->GetUint("length");
    if (!offset.ok() || !length.ok()) return Fail(offset.ok() ? length.status() : offset.status());
    v1::RegisterResourceRequest req;
    req.set_path(args->Get("register"));
    req.set_offset(*offset);
    req.set_length(*length);
    req.set_shared(args->Get("shared") == "true");
    v1::RegisterResourceResponse resp;
    grpc::Status s = service->RegisterResource(context().get(), req, &resp);
    if (!s.ok()) return Fail(client::FromGrpcStatus(s));
    std::printf("registered resource %u\n", resp.resource_id());
    return 0;
  }
  if (!args->Get("evict").empty()) {
    auto id = args->GetUint("evict");
    if (!id.ok()) return Fail(id.status());
    v1::EvictResourceRequest req;
    req.set_resource_id(static_cast<uint32_t>(*id));
    req.set_shared(args->Get("shared") == "true");
    v1::EvictResourceResponse resp;
    grpc::Status s = service->EvictResource(context().get(), req, &resp);
    if (!s.ok()) return Fail(client::FromGrpcStatus(s));
    std::printf("evicted resource %llu\n", static_cast<unsigned long long>(*id));
    return 0;
  }
  v1::ListResourcesResponse response;
  grpc::Status s = service->ListResources(context().get(), v1::ListResourcesRequest(), &response);
  if (!s.ok()) return Fail(client::FromGrpcStatus(s));
  for (const v1::Resource& r : response.resources()) {
    std::printf("%u %s offset=%llu length=%llu resident=%d shared=%d\n", r.resource_id(),
                r.path().c_str(), static_cast<unsigned long long>(r.offset()),
                static_cast<unsigned long long>(r.length()), r.resident(), r.shared());
  }
  return 0;
}

}  // namespace
}  // namespace mk::mkctl

int main(int argc, char** argv) {
  const std::string usage =
      "usage: mkctl <command> [--flag=value ...]\n"
      "commands:\n"
      "  publish     publish slots (optionally wait for results)\n"
      "  poll        collect completions of tickets\n"
      "  telemetry   print a telemetry snapshot\n"
      "  resources   list, register or evict LOAD_MISS resources\n"
      "  bench       load generator (closed/open loop) and the baseline suite\n"
      "  top         live view of occupancy, throughput per tenant, watchdog\n"
      "run 'mkctl <command> --help' for a command's flags\n";
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::printf("%s", usage.c_str());
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> rest(argv + 2, argv + argc);
  if (command == "publish") return mk::mkctl::Publish(rest);
  if (command == "poll") return mk::mkctl::Poll(rest);
  if (command == "telemetry") return mk::mkctl::Telemetry(rest);
  if (command == "resources") return mk::mkctl::Resources(rest);
  if (command == "bench") return mk::mkctl::RunBench(rest);
  if (command == "top") return mk::mkctl::RunTop(rest);
  std::fprintf(stderr, "mkctl: unknown command '%s'\n%s", command.c_str(), usage.c_str());
  return 2;
}
