#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mk/metrics/metrics.h"

namespace mk::metrics {
namespace {

using ::testing::HasSubstr;

TEST(ExporterTest, RendersCollectorFamiliesAtScrapeTime) {
  auto exporter = Exporter::CreateUnserved();
  int scrapes = 0;
  exporter->AddCollector([&](std::vector<Family>* out) {
    ++scrapes;
    Family requests{"mk_test_requests_total", "Requests.", Type::kCounter, {}};
    requests.samples.push_back({{{"method", "a"}}, 3, {}});
    out->push_back(requests);
    Family latency{"mk_test_latency_seconds", "Latency.", Type::kHistogram, {}};
    Sample s;
    s.histogram.upper_bounds = {0.001, 0.01};
    s.histogram.bucket_counts = {2, 1, 1};  // per bucket; the exporter makes them cumulative
    s.histogram.sum = 0.5;
    latency.samples.push_back(s);
    out->push_back(latency);
  });
  const std::string text = exporter->Render();
  EXPECT_EQ(scrapes, 1);
  EXPECT_THAT(text, HasSubstr("# TYPE mk_test_requests_total counter"));
  EXPECT_THAT(text, HasSubstr("mk_test_requests_total{method=\"a\"} 3"));
  EXPECT_THAT(text, HasSubstr("mk_test_latency_seconds_bucket{le=\"0.001\"} 2"));
  EXPECT_THAT(text, HasSubstr("mk_test_latency_seconds_bucket{le=\"0.01\"} 3"));
  EXPECT_THAT(text, HasSubstr("mk_test_latency_seconds_bucket{le=\"+Inf\"} 4"));
  EXPECT_THAT(text, HasSubstr("mk_test_latency_seconds_count 4"));
  exporter->Render();
  EXPECT_EQ(scrapes, 2) << "collected anew on every scrape";
}

TEST(ExporterTest, PortInUseIsAClearError) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string taken = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto exporter = Exporter::Create(taken);
  EXPECT_EQ(exporter.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(exporter.status().message(), HasSubstr("cannot listen on " + taken));
  EXPECT_THAT(exporter.status().message(), HasSubstr("--metrics_listen"));
  close(fd);
}

TEST(ExporterTest, ServesOnAFreePort) {
  auto exporter = Exporter::Create("127.0.0.1:0");
  ASSERT_TRUE(exporter.ok()) << exporter.status();
  EXPECT_GT((*exporter)->port(), 0);
}

// Connects to 127.0.0.1:`port`; -1 on failure.
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Three clients that connect and send nothing (or half a request) do not block a scrape.
TEST(ExporterTest, StalledConnectionsDoNotBlockScrapes) {
  auto exporter = Exporter::Create("127.0.0.1:0");
  ASSERT_TRUE(exporter.ok()) << exporter.status();
  (*exporter)->AddCollector([](std::vector<Family>* out) {
    out->push_back(Family{"mk_test_up", "Up.", Type::kGauge, {{{}, 1, {}}}});
  });
  const int port = (*exporter)->port();
  std::vector<int> stalled;
  for (int i = 0; i < 3; ++i) {
    const int fd = Connect(port);
    ASSERT_GE(fd, 0);
    if (i == 2) {
      const char half[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";  // never finished
      ASSERT_GT(write(fd, half, sizeof(half) - 1), 0);
    }
    stalled.push_back(fd);
  }
  const int fd = Connect(port);
  ASSERT_GE(fd, 0);
  timeval timeout{2, 0};  // a scrape blocked behind the stalled clients would take longer
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  const char request[] = "GET /metrics HTTP/1.0\r\n\r\n";
  ASSERT_GT(write(fd, request, sizeof(request) - 1), 0);
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) response.append(buf, n);
  close(fd);
  for (int s : stalled) close(s);
  EXPECT_THAT(response, HasSubstr("mk_test_up 1"));
}

}  // namespace
}  // namespace mk::metrics
