// Metrics benchmark (label perf), in one run on this machine:
//   - a real HTTP GET of /metrics against a server whose engine has a 1 M-slot ring (the scrape
//     decodes every slot's state), p50 and max over repeated scrapes;
//   - CPU engine NOP throughput with metrics enabled (latency histograms recorded and /metrics
//     scraped every 100 ms, ten times Prometheus's usual rate) against metrics disabled, run
//     alternately, and the ratio.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "mk/engine/engine.h"
#include "mk/engine/testing/engine_peer.h"
#include "mk/server/server.h"

namespace {

using Clock = std::chrono::steady_clock;

void Print(const char* figure, double value, const char* unit) {
  std::printf("bench: metrics %s %.4g %s\n", figure, value, unit);
  std::fflush(stdout);
}

// GET /metrics over a fresh connection; returns the response size (0 on failure).
size_t HttpGetMetrics(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return 0;
  }
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return 0;
  }
  size_t total = 0;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) total += n;
  close(fd);
  return total;
}

struct Served {
  std::unique_ptr<mk::engine::Engine> engine;
  std::unique_ptr<mk::server::Server> server;
};

Served Start(uint32_t ring_slots, bool collect_latency, bool watchdog = true) {
  mk::engine::EngineOptions eo;
  eo.backend = mk::engine::EngineOptions::Backend::kCpu;
  eo.ring_slots = ring_slots;
  eo.collect_latency = collect_latency;
  Served s;
  s.engine = *mk::engine::CreateEngine(eo);
  if (!s.engine->Start().ok()) std::abort();
  mk::server::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.metrics_listen = "127.0.0.1:0";
  if (!watchdog) so.watchdog.interval = absl::ZeroDuration();
  auto server = mk::server::Server::Create(so, s.engine.get());
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    std::abort();
  }
  s.server = *std::move(server);
  return s;
}

class CountingSink final : public mk::engine::CompletionSink {
 public:
  void OnCompletions(absl::Span<const mk::engine::Completion> b) override { n_ += b.size(); }
  std::atomic<uint64_t> n_{0};
};

double NopThroughput(mk::engine::Engine& engine, uint64_t total) {
  CountingSink sink;
  std::vector<mk::engine::SlotPayload> batch(1024);
  const auto start = Clock::now();
  uint64_t sent = 0;
  while (sent < total) {
    if (engine.Publish(1, batch, {&sink}).ok()) {
      sent += batch.size();
    } else {
      std::this_thread::yield();  // ring full: backpressure
    }
  }
  // Every published slot completes into `sink` before it goes out of scope.
  while (sink.n_.load() < sent) std::this_thread::yield();
  return sent / std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main() {
  const char* q = std::getenv("MK_BENCH_QUICK");
  const bool quick = q != nullptr && q[0] == '1';

  {
    // A 1 M-slot ring, first idle, then completely full (execution paused through the test
    // hook, the watchdog off): the scrape then decodes the state of every slot.
    Served big = Start(1u << 20, true, /*watchdog=*/false);
    auto scrape = [&](const char* figure) {
      std::vector<double> ms;
      size_t bytes = 0;
      for (int i = 0; i < (quick ? 10 : 50); ++i) {
        const auto t0 = Clock::now();
        bytes = HttpGetMetrics(big.server->metrics_port());
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        if (bytes == 0) std::abort();
      }
      std::sort(ms.begin(), ms.end());
      Print((std::string(figure) + "_p50").c_str(), ms[ms.size() / 2], "ms");
      Print((std::string(figure) + "_max").c_str(), ms.back(), "ms");
    };
    scrape("scrape_1m_ring_idle");
    mk::engine::testing::EnginePeer::PauseExecution(*big.engine, true);
    uint64_t filled = 0;
    for (uint32_t priority = 0; priority < 5; ++priority) {
      std::vector<mk::engine::SlotPayload> batch(256);
      for (auto& slot : batch) slot.priority = priority;
      while (big.engine->Publish(1, batch, {}).ok()) filled += batch.size();
    }
    std::printf("# full ring: %llu of %u slots in flight\n",
                static_cast<unsigned long long>(filled), big.engine->info().ring_slots);
    scrape("scrape_1m_ring_full");
    {
      std::vector<double> ms;
      for (int i = 0; i < 10; ++i) {
        const auto t0 = Clock::now();
        big.server->RenderMetrics();
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      std::sort(ms.begin(), ms.end());
      Print("render_1m_ring_full_p50", ms[ms.size() / 2], "ms");
    }
    big.engine->Shutdown().IgnoreError();
  }

  const uint64_t slots = quick ? 4'000'000 : 20'000'000;
  Served off = Start(1u << 17, false);
  Served on = Start(1u << 17, true);
  std::atomic<bool> scraping{true};
  std::thread scraper([&] {
    while (scraping.load()) {
      HttpGetMetrics(on.server->metrics_port());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the scrape period
    }
  });
  NopThroughput(*off.engine, slots / 10);  // warm-up
  NopThroughput(*on.engine, slots / 10);
  std::vector<double> disabled, enabled;
  const int rounds = quick ? 3 : 5;
  for (int round = 0; round < rounds; ++round) {  // alternate to spread machine noise evenly
    disabled.push_back(NopThroughput(*off.engine, slots));
    enabled.push_back(NopThroughput(*on.engine, slots));
  }
  scraping = false;
  scraper.join();
  std::sort(disabled.begin(), disabled.end());
  std::sort(enabled.begin(), enabled.end());
  const size_t median = disabled.size() / 2;
  Print("nop_throughput_metrics_disabled", disabled[median], "slots/s");
  Print("nop_throughput_metrics_enabled", enabled[median], "slots/s");
  Print("ratio_enabled_vs_disabled", enabled[median] / disabled[median], "x");
  return 0;
}
