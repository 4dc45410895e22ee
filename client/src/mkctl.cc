// mkctl: the command-line client of megakerneld.
//   mkctl publish | poll | telemetry | resources | buffer | admin | bench | top | soak
//   (each with --help)
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "mkctl_common.h"

namespace mk::mkctl {
namespace {

constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();
constexpr size_t kArgWords = 12;         // argument words of a slot (docs/protocol.md)
constexpr uint64_t kMaxPriority = 4;     // 0 CRITICAL .. 4 IDLE
constexpr uint64_t kMaxCount = 1 << 20;  // slots of one publish

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
  int exit_code = 0;
  const auto args = ParseCommand(
      "publish", "Publishes a batch of slots; prints the tickets and, with --wait, results.",
      {
          UintFlag("opcode", "0", 0, kMaxU32,
                   "opcode (0 NOP, 1 STORE_U32, 2 ATOMIC_ADD, 3 LOAD_U32, ...)"),
          UintListFlag("args", kMaxU32, kArgWords, "comma-separated argument words (at most 12)"),
          UintFlag("priority", "2", 0, kMaxPriority, "0 CRITICAL .. 4 IDLE"),
          UintFlag("count", "1", 1, kMaxCount, "how many copies of the slot to publish at once"),
          DurationFlag("wait", "0s", false,
                       "wait up to this long for the results (0s: return tickets at once)"),
      },
      argv, &exit_code);
  if (!args) return exit_code;
  auto c = Connect(*args);
  if (!c.ok()) return Fail(c.status());
  const std::vector<client::Slot> slots(
      args->Uint("count"),
      client::Slot{static_cast<uint32_t>(args->Uint("opcode")),
                   static_cast<uint32_t>(args->Uint("priority")), args->Uint32List("args")});
  auto r = (*c)->Publish(slots, args->Duration("wait"));
  if (!r.ok()) return Fail(r.status());
  std::printf("published %u slots: tickets %llu..%llu\n", r->count,
              static_cast<unsigned long long>(r->first_ticket),
              static_cast<unsigned long long>(r->first_ticket + r->count - 1));
  PrintCompletions(r->completions);
  return 0;
}

int Poll(const std::vector<std::string>& argv) {
  int exit_code = 0;
  const auto args = ParseCommand(
      "poll", "Collects the completions of tickets (each can be collected once).",
      {
          UintListFlag("tickets", kMaxU64, kMaxCount, "comma-separated tickets from publish"),
          DurationFlag("wait", "1s", false, "wait up to this long for them to complete"),
      },
      argv, &exit_code);
  if (!args) return exit_code;
  auto c = Connect(*args);
  if (!c.ok()) return Fail(c.status());
  const std::vector<uint64_t>& tickets = args->UintList("tickets");
  auto got = (*c)->Poll(tickets, args->Duration("wait"));
  if (!got.ok()) return Fail(got.status());
  PrintCompletions(*got);
  std::printf("%zu of %zu tickets complete\n", got->size(), tickets.size());
  return 0;
}

int Telemetry(const std::vector<std::string>& argv) {
  int exit_code = 0;
  const auto args =
      ParseCommand("telemetry", "Prints one telemetry snapshot (occupancy, counters, watchdog).",
                   {UintListFlag("window_opcodes", kMaxU32, kMaxCount,
                                 "comma-separated opcodes grouped into ticketed windows")},
                   argv, &exit_code);
  if (!args) return exit_code;
  auto c = Connect(*args);
  if (!c.ok()) return Fail(c.status());
  auto t = (*c)->GetTelemetry(args->Uint32List("window_opcodes"));
  if (!t.ok()) return Fail(t.status());
  std::printf("%s", t->DebugString().c_str());
  return 0;
}

int Resources(const std::vector<std::string>& argv) {
  int exit_code = 0;
  const auto args = ParseCommand(
      "resources",
      "Lists your resources for LOAD_MISS; --register=PATH adds one, --evict=ID drops one.",
      {
          PathFlag("register",
                   "register this file of your folder (<--resource_root>/tenants/<id>/)"),
          BoolFlag("shared", false,
                   "--register/--evict: a file of the root's shared/ (the admin token)"),
          UintFlag("offset", "0", 0, kMaxU64, "with --register: first byte"),
          UintFlag("length", "0", 0, kMaxU64,
                   "with --register: bytes (0 = to the end of the file)"),
          UintFlag("evict", "", 0, kMaxU32, "evict this resource id"),
      },
      argv, &exit_code);
  if (!args) return exit_code;
  if (args->Has("register") && args->Has("evict")) {
    return UsageError("--register and --evict are exclusive");
  }
  auto c = Connect(*args);
  if (!c.ok()) return Fail(c.status());
  // The generated Megakernel service client (gRPC names it Stub); calls carry a 10 s deadline.
  v1::Megakernel::Stub* service = (*c)->megakernel();
  auto context = [&] { return (*c)->NewContext(absl::Seconds(10)); };
  if (args->Has("register")) {
    v1::RegisterResourceRequest req;
    req.set_path(args->String("register"));
    req.set_offset(args->Uint("offset"));
    req.set_length(args->Uint("length"));
    req.set_shared(args->Bool("shared"));
    v1::RegisterResourceResponse resp;
    grpc::Status s = service->RegisterResource(context().get(), req, &resp);
    if (!s.ok()) return Fail(client::FromGrpcStatus(s));
    std::printf("registered resource %u\n", resp.resource_id());
    return 0;
  }
  if (args->Has("evict")) {
    const uint64_t id = args->Uint("evict");
    v1::EvictResourceRequest req;
    req.set_resource_id(static_cast<uint32_t>(id));  // the spec checked it fits 32 bits
    req.set_shared(args->Bool("shared"));
    v1::EvictResourceResponse resp;
    grpc::Status s = service->EvictResource(context().get(), req, &resp);
    if (!s.ok()) return Fail(client::FromGrpcStatus(s));
    std::printf("evicted resource %llu\n", static_cast<unsigned long long>(id));
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

int Admin(const std::vector<std::string>& argv) {
  int exit_code = 0;
  const auto args = ParseCommand(
      "admin", "Admin calls (the admin token): enable or disable a tenant.",
      {
          UintFlag("enable_tenant", "", 0, kMaxU32, "enable this tenant (its parked slots run)"),
          UintFlag("disable_tenant", "", 0, kMaxU32,
                   "disable this tenant: its publishes are refused, its slots in flight park"),
      },
      argv, &exit_code);
  if (!args) return exit_code;
  if (args->Has("enable_tenant") == args->Has("disable_tenant")) {
    return UsageError("admin needs one of --enable_tenant=N and --disable_tenant=N");
  }
  auto c = Connect(*args);
  if (!c.ok()) return Fail(c.status());
  const bool enable = args->Has("enable_tenant");
  const uint64_t tenant = args->Uint(enable ? "enable_tenant" : "disable_tenant");
  // The spec checked the tenant fits 32 bits.
  if (absl::Status s = (*c)->SetTenantEnabled(static_cast<uint32_t>(tenant), enable); !s.ok()) {
    return Fail(s);
  }
  std::printf("tenant %llu %s\n", static_cast<unsigned long long>(tenant),
              enable ? "enabled" : "disabled");
  return 0;
}

}  // namespace
}  // namespace mk::mkctl

int main(int argc, char** argv) {
  const std::string usage =
      "usage: mkctl <command> [--flag=value ...]\n"
      "       mkctl --help | --version\n"
      "commands:\n"
      "  publish     publish slots (optionally wait for results)\n"
      "  poll        collect completions of tickets\n"
      "  telemetry   print a telemetry snapshot\n"
      "  resources   list, register or evict LOAD_MISS resources\n"
      "  buffer      create, write, read, free or list your buffers (create|write|read|free|ls)\n"
      "  admin       enable or disable a tenant (the admin token)\n"
      "  bench       load generator (closed/open loop) and the baseline suite\n"
      "  top         live view of occupancy, throughput per tenant, watchdog\n"
      "  soak        drive the server with several tenants and faults; reconcile every ticket\n"
      "run 'mkctl <command> --help' for a command's flags. The token is --token, else the first\n"
      "line of --token_file, else the MK_TOKEN environment variable.\n"
      "Exit status: 0 ok, 1 the call failed, 2 bad flags.\n";
  if (argc < 2) {
    std::fprintf(stderr, "%s", usage.c_str());
    return mk::mkctl::kExitUsage;
  }
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::printf("%s", usage.c_str());
    return 0;
  }
  if (command == "--version" || command == "version") {
    std::printf("mkctl %s\n", mk::mkctl::Version());
    return 0;
  }
  const std::vector<std::string> rest(argv + 2, argv + argc);
  if (command == "publish") return mk::mkctl::Publish(rest);
  if (command == "poll") return mk::mkctl::Poll(rest);
  if (command == "telemetry") return mk::mkctl::Telemetry(rest);
  if (command == "resources") return mk::mkctl::Resources(rest);
  if (command == "buffer") return mk::mkctl::RunBuffer(rest);
  if (command == "admin") return mk::mkctl::Admin(rest);
  if (command == "bench") return mk::mkctl::RunBench(rest);
  if (command == "top") return mk::mkctl::RunTop(rest);
  if (command == "soak") return mk::mkctl::RunSoak(rest);
  std::fprintf(stderr, "mkctl: unknown command '%s'\n%s", command.c_str(), usage.c_str());
  return mk::mkctl::kExitUsage;
}
