#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

}  // namespace
}  // namespace mk::metrics
