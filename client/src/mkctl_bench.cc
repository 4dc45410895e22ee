// mkctl bench: load generation against megakerneld.
//   --mode=closed  N concurrent callers, each publishing one batch and waiting for its results
//   --mode=open    requests started at a fixed rate; latency counts from the scheduled start
//                  (no coordinated omission)
//   --mode=suite   the product's RPCs against the same-channel baselines (Diagnostics echo):
//                  unary round trip, stream ping-pong, and pipelined packed-stream throughput
//                  (--quick=true: a short run).
// Prints `bench:` lines, a text latency histogram, and optionally an SVG plot (--plot).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mkctl_common.h"

namespace mk::mkctl {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kMaxConcurrency = 1024;    // threads
constexpr uint64_t kMaxRate = 1'000'000'000;  // requests per second
constexpr uint64_t kMaxBatch = 1 << 20;       // slots per request

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

void PrintFigure(const char* figure, double value, const char* unit) {
  std::printf("bench: grpc %s %.4g %s\n", figure, value, unit);
  std::fflush(stdout);
}

// Latencies from many threads.
class Recorder {
 public:
  void Add(double us) {
    std::lock_guard<std::mutex> lock(mu_);
    samples_.push_back(us);
  }
  std::vector<double> samples() {
    std::lock_guard<std::mutex> lock(mu_);
    return samples_;
  }

 private:
  std::mutex mu_;
  std::vector<double> samples_;
};

// Log2 buckets from 1 us: bucket i holds [2^i, 2^(i+1)) us.
std::vector<uint64_t> Histogram(const std::vector<double>& us) {
  std::vector<uint64_t> buckets(24, 0);
  for (double v : us) {
    const int b = v < 1 ? 0 : std::min<int>(23, static_cast<int>(std::log2(v)));
    ++buckets[b];
  }
  return buckets;
}

void PrintHistogram(const std::vector<double>& us) {
  const auto buckets = Histogram(us);
  const uint64_t max = *std::max_element(buckets.begin(), buckets.end());
  std::printf("latency histogram (us):\n");
  for (size_t b = 0; b < buckets.size(); ++b) {
    if (buckets[b] == 0) continue;
    const int bar = max == 0 ? 0 : static_cast<int>(50.0 * buckets[b] / max);
    std::printf("  [%8.0f, %8.0f) %-50s %llu\n", std::pow(2.0, b), std::pow(2.0, b + 1),
                std::string(bar, '#').c_str(), static_cast<unsigned long long>(buckets[b]));
  }
}

absl::Status WritePlot(const std::string& path, const std::vector<double>& us,
                       const std::string& title) {
  const auto buckets = Histogram(us);
  const uint64_t max = std::max<uint64_t>(1, *std::max_element(buckets.begin(), buckets.end()));
  std::ofstream out(path);
  if (!out) return absl::UnavailableError(absl::StrCat("bench: cannot write ", path));
  const int width = 720, height = 360, left = 60, bottom = 300, bar_w = 26;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"11\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << left << "\" y=\"20\" font-size=\"14\">" << title << "</text>\n"
      << "<line x1=\"" << left << "\" y1=\"" << bottom << "\" x2=\"" << width - 10 << "\" y2=\""
      << bottom << "\" stroke=\"black\"/>\n";
  for (size_t b = 0; b < buckets.size(); ++b) {
    const int h = static_cast<int>(250.0 * buckets[b] / max);
    const int x = left + static_cast<int>(b) * bar_w;
    out << "<rect x=\"" << x << "\" y=\"" << bottom - h << "\" width=\"" << bar_w - 2
        << "\" height=\"" << h << "\" fill=\"steelblue\"/>\n";
    if (b % 2 == 0) {
      out << "<text x=\"" << x << "\" y=\"" << bottom + 14 << "\">" << (1u << b) << "</text>\n";
    }
  }
  out << "<text x=\"" << left << "\" y=\"" << bottom + 34
      << "\">latency, microseconds (log2 buckets); bar height = requests</text>\n</svg>\n";
  return absl::OkStatus();
}

// Prints "\r[#####.....] 40% 12345 req/s" to stderr until stopped.
class ProgressBar {
 public:
  ProgressBar(absl::Duration total, const std::atomic<uint64_t>* done)
      : thread_([this, total, done] {
          const auto start = Clock::now();
          std::unique_lock<std::mutex> lock(mu_);
          while (!cv_.wait_for(lock, std::chrono::milliseconds(250), [this] { return stop_; })) {
            const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
            const double frac = std::min(1.0, elapsed / absl::ToDoubleSeconds(total));
            const int filled = static_cast<int>(frac * 30);
            std::fprintf(stderr, "\r[%s%s] %3.0f%% %10.0f req/s", std::string(filled, '#').c_str(),
                         std::string(30 - filled, '.').c_str(), frac * 100,
                         elapsed > 0 ? done->load() / elapsed : 0.0);
          }
          std::fprintf(stderr, "\n");
        }) {}
  ~ProgressBar() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// Suite: product vs. the echo baseline on the same channel.

std::vector<double> TimeUnary(int n, const std::function<bool()>& call) {
  std::vector<double> us;
  us.reserve(n);
  for (int i = 0; i < n; ++i) {
    const auto start = Clock::now();
    if (!call()) return {};
    us.push_back(Micros(Clock::now() - start));
  }
  return us;
}

// Writes `messages` copies of `request` with at most `window` messages unanswered, reading the
// answers on a second thread; returns units answered per second (`units_of` counts the units a
// response answers; each request carries `units_per_message`). `rejected_of` counts requests a
// response says were refused (backpressure: RESOURCE_EXHAUSTED); they are sent again, and
// their number is added to `*rejected`.
template <typename Response, typename Stream, typename Request, typename UnitsOf,
          typename RejectedOf>
double PipelinedThroughput(Stream& stream, const Request& request, int messages, int window,
                           int64_t units_per_message, UnitsOf units_of, RejectedOf rejected_of,
                           int64_t* rejected_total) {
  const int64_t total = int64_t{messages} * units_per_message;
  std::atomic<int64_t> answered{0};
  std::atomic<int64_t> rejected{0};
  std::atomic<bool> reading{true};
  const auto start = Clock::now();
  std::thread reader([&] {
    Response response;
    while (answered.load() < total && stream.Read(&response)) {
      rejected += rejected_of(response);
      answered += units_of(response);
    }
    reading = false;
  });
  for (int64_t sent = 0; answered.load() < total && reading.load();) {
    const int64_t refused = rejected.load();
    if (sent >= messages + refused || (sent - refused) * units_per_message - answered.load() >=
                                          int64_t{window} * units_per_message) {
      std::this_thread::yield();  // the pipelining window is full, or all sent and in flight
      continue;
    }
    if (!stream.Write(request)) break;
    ++sent;
  }
  reader.join();
  *rejected_total += rejected.load();
  return answered.load() / std::chrono::duration<double>(Clock::now() - start).count();
}

// 4. Buffer upload (WriteBuffer) and download (ReadBuffer) in 1 MiB messages vs an echo stream
// of the same 1 MiB messages over the same channel (payload bytes per second, counted once).
int BufferTransfers(client::Client& c, bool quick) {
  constexpr uint32_t kChunk = 1u << 20;
  const int messages = quick ? 64 : 512;
  const uint64_t total = uint64_t{kChunk} * messages;
  auto buffer = c.CreateBuffer(total);
  if (!buffer.ok()) return Fail(buffer.status());
  const std::string data(total, 'b');
  auto start = Clock::now();
  auto written = c.WriteBuffer(buffer->handle(), 0, data, kChunk);
  const double upload_s = std::chrono::duration<double>(Clock::now() - start).count();
  start = Clock::now();
  auto read = c.ReadBuffer(buffer->handle(), 0, total, kChunk);
  const double download_s = std::chrono::duration<double>(Clock::now() - start).count();
  const absl::Status freed = c.FreeBuffer(buffer->handle());
  if (!written.ok()) return Fail(written.status());
  if (!read.ok()) return Fail(read.status());
  if (!freed.ok()) return Fail(freed);
  if (*read != data) return Fail(absl::DataLossError("bench: the buffer read back differs"));
  grpc::ClientContext ctx;
  auto e = c.diagnostics()->EchoStream(&ctx);
  v1::EchoRequest er;
  er.set_payload(std::string(kChunk, 'e'));
  int64_t rejected = 0;
  const double echo_messages_per_s = PipelinedThroughput<v1::EchoResponse>(
      *e, er, messages, 4, 1, [](const v1::EchoResponse&) { return int64_t{1}; },
      [](const v1::EchoResponse&) { return int64_t{0}; }, &rejected);
  e->WritesDone();
  e->Finish();
  const double mb = 1e6, echo = echo_messages_per_s * kChunk / mb;
  PrintFigure("buffer_upload_MBps", total / upload_s / mb, "MB/s");
  PrintFigure("buffer_download_MBps", total / download_s / mb, "MB/s");
  PrintFigure("echo_stream_1MiB_MBps", echo, "MB/s");
  PrintFigure("buffer_upload_ratio_vs_echo", total / upload_s / mb / echo, "x");
  PrintFigure("buffer_download_ratio_vs_echo", total / download_s / mb / echo, "x");
  return 0;
}

int Suite(client::Client& c, bool quick) {
  const int n = quick ? 2000 : 20000;
  const std::vector<client::Slot> nop(1);
  // 1. Unary: Publish(1 NOP, wait) vs Echo(64 B).
  const std::string payload(64, 'x');
  auto echo = [&] { return c.Echo(payload).ok(); };
  auto publish = [&] {
    auto r = c.Publish(nop, absl::Seconds(5));
    return r.ok() && r->completions.size() == 1;
  };
  TimeUnary(n / 10, echo);
  TimeUnary(n / 10, publish);
  const auto echo_us = TimeUnary(n, echo);
  const auto publish_us = TimeUnary(n, publish);
  if (echo_us.empty() || publish_us.empty()) {
    std::fprintf(stderr, "mkctl: unary suite failed\n");
    return 1;
  }
  PrintFigure("unary_echo_p50", Percentile(echo_us, 0.5), "us");
  PrintFigure("unary_echo_p99", Percentile(echo_us, 0.99), "us");
  PrintFigure("unary_publish_wait_p50", Percentile(publish_us, 0.5), "us");
  PrintFigure("unary_publish_wait_p99", Percentile(publish_us, 0.99), "us");
  PrintFigure("unary_ratio_vs_echo", Percentile(publish_us, 0.5) / Percentile(echo_us, 0.5), "x");

  // 2. Stream ping-pong: one slot in, its completion out; vs EchoStream ping-pong.
  std::vector<double> stream_us, echo_stream_us;
  {
    auto s = c.OpenStream();
    v1::PublishRequest req;
    req.mutable_slots()->add_slots();
    v1::CompletionBatch batch;
    for (int i = 0; i < n + n / 10; ++i) {
      const auto start = Clock::now();
      if (!s->Write(req)) break;
      int got = 0;
      while (got == 0 && s->Read(&batch)) got = batch.completions_size();
      if (i >= n / 10) stream_us.push_back(Micros(Clock::now() - start));
    }
    s->WritesDone();
    if (absl::Status st = s->Finish(); !st.ok() || stream_us.size() != static_cast<size_t>(n)) {
      std::fprintf(stderr, "mkctl: stream ping-pong failed: %s\n", st.ToString().c_str());
      return 1;
    }
    grpc::ClientContext ctx;
    auto e = c.diagnostics()->EchoStream(&ctx);
    v1::EchoRequest er;
    er.set_payload(payload);
    v1::EchoResponse resp;
    for (int i = 0; i < n + n / 10; ++i) {
      const auto start = Clock::now();
      if (!e->Write(er) || !e->Read(&resp)) break;
      if (i >= n / 10) echo_stream_us.push_back(Micros(Clock::now() - start));
    }
    e->WritesDone();
    e->Finish();
  }
  PrintFigure("stream_echo_pingpong_p50", Percentile(echo_stream_us, 0.5), "us");
  PrintFigure("stream_pingpong_p50", Percentile(stream_us, 0.5), "us");
  PrintFigure("stream_pingpong_p99", Percentile(stream_us, 0.99), "us");
  PrintFigure("stream_ratio_vs_echo", Percentile(stream_us, 0.5) / Percentile(echo_stream_us, 0.5),
              "x");

  // 3. Pipelined packed batches of 1024 NOPs vs an echo stream of the same 64 KiB messages.
  const int batches = quick ? 2000 : 10000;
  constexpr int kWindow = 16;
  const std::string packed = client::EncodePacked(std::vector<client::Slot>(1024));
  double slots_per_s = 0, echo_slots_per_s = 0;
  int64_t rejected = 0;  // requests refused by backpressure and sent again
  {
    auto s = c.OpenStream();
    v1::PublishRequest req;
    req.set_packed_slots(packed);
    slots_per_s = PipelinedThroughput<v1::CompletionBatch>(
        *s, req, batches, kWindow, 1024,
        [](const v1::CompletionBatch& b) {
          return static_cast<int64_t>(b.packed_completions().size() / 64);
        },
        [](const v1::CompletionBatch& b) {
          int64_t refused = 0;
          for (const v1::PublishAck& ack : b.acks()) refused += ack.error_code() != 0;
          return refused;
        },
        &rejected);
    s->WritesDone();
    s->Finish().IgnoreError();

    grpc::ClientContext ctx;
    auto e = c.diagnostics()->EchoStream(&ctx);
    v1::EchoRequest er;
    er.set_payload(packed);
    echo_slots_per_s = PipelinedThroughput<v1::EchoResponse>(
        *e, er, batches, kWindow, 1024, [](const v1::EchoResponse&) { return int64_t{1024}; },
        [](const v1::EchoResponse&) { return int64_t{0}; }, &rejected);
    e->WritesDone();
    e->Finish();
  }
  PrintFigure("stream_packed1024_throughput", slots_per_s, "slots/s");
  PrintFigure("echo_stream_64KiB_throughput", echo_slots_per_s, "slot_equivalents/s");
  PrintFigure("stream_packed_ratio_vs_echo", slots_per_s / echo_slots_per_s, "x");
  PrintFigure("stream_packed_rejected_requests", static_cast<double>(rejected), "requests");
  return BufferTransfers(c, quick);
}

}  // namespace

int RunBench(const std::vector<std::string>& argv) {
  int exit_code = 0;
  const auto args = ParseCommand(
      "bench", "Load generator; --mode=suite compares with the same-channel baselines.",
      {
          ChoiceFlag("mode", "closed", {"closed", "open", "suite"},
                     "closed loop, open loop (a fixed rate) or the baseline suite"),
          DurationFlag("duration", "5s", true, "how long to run (closed and open)"),
          UintFlag("concurrency", "4", 1, kMaxConcurrency,
                   "concurrent callers (closed) or sender threads (open)"),
          UintFlag("rate", "1000", 0, kMaxRate, "requests per second (open; must be > 0)"),
          UintFlag("batch", "1", 1, kMaxBatch, "NOP slots per request"),
          PathFlag("plot", "write the latency histogram as an SVG image to this file"),
          BoolFlag("quick", false, "suite: a short run"),
      },
      argv, &exit_code);
  if (!args) return exit_code;
  const std::string mode = args->String("mode");
  const absl::Duration duration = args->Duration("duration");
  const uint64_t concurrency = args->Uint("concurrency");
  const uint64_t rate = args->Uint("rate");
  if (mode == "open" && rate == 0) {
    // No schedule: the senders would never reach the end of --duration.
    return UsageError("--rate=0: --mode=open needs a rate > 0 requests per second");
  }
  auto c = Connect(*args);
  if (!c.ok()) return Fail(c.status());
  if (mode == "suite") return Suite(**c, args->Bool("quick"));
  const std::vector<client::Slot> slots(args->Uint("batch"));
  Recorder recorder;
  std::atomic<uint64_t> requests{0}, errors{0};
  const auto start = Clock::now();
  const auto end = start + absl::ToChronoNanoseconds(duration);
  {
    ProgressBar bar(duration, &requests);
    std::vector<std::thread> threads;
    for (uint64_t t = 0; t < concurrency; ++t) {
      threads.emplace_back([&, t] {
        for (uint64_t i = t;; i += concurrency) {
          auto scheduled = Clock::now();
          if (mode == "open") {
            scheduled = start + std::chrono::nanoseconds(static_cast<int64_t>(1e9 * i / rate));
            std::this_thread::sleep_until(scheduled);  // the open-loop schedule
          }
          if (scheduled >= end) return;
          auto r = (*c)->Publish(slots, absl::Seconds(10));
          if (r.ok() && r->completions.size() == slots.size()) {
            recorder.Add(Micros(Clock::now() - scheduled));
          } else {
            ++errors;
          }
          ++requests;
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const auto us = recorder.samples();
  std::printf("mode=%s requests=%llu errors=%llu slots/request=%zu\n", mode.c_str(),
              static_cast<unsigned long long>(requests.load()),
              static_cast<unsigned long long>(errors.load()), slots.size());
  PrintFigure("bench_requests_per_second", us.size() / seconds, "req/s");
  PrintFigure("bench_slots_per_second", us.size() * slots.size() / seconds, "slots/s");
  PrintFigure("bench_latency_p50", Percentile(us, 0.5), "us");
  PrintFigure("bench_latency_p99", Percentile(us, 0.99), "us");
  if (!us.empty()) PrintHistogram(us);
  if (const std::string plot = args->String("plot"); !plot.empty() && !us.empty()) {
    absl::Status s =
        WritePlot(plot, us, absl::StrFormat("mkctl bench --mode=%s: %d requests", mode, us.size()));
    if (!s.ok()) return Fail(s);
    std::printf("plot written to %s\n", plot.c_str());
  }
  return errors.load() == 0 ? 0 : 1;
}

}  // namespace mk::mkctl
