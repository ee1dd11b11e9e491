// /metrics on the coordinator and on a writer returns valid Prometheus text
// with the listed series; the status page's JSON describes checkpoints with
// their retention reasons; the gRPC health service answers.
#include <cstdlib>
#include <ctime>
#include <regex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "observability/log.h"
#include "proto/health.grpc.pb.h"
#include "client/client.h"
#include "proto/rpc/rpc_util.h"
#include "storage/bundle/safetensors.h"
#include "tests/testing/process.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

// The HTTP address a server logged ("... on http://HOST:PORT/...").
std::string HttpAddress(const std::string& log_path) {
  const std::string log = testing::ReadFile(log_path);
  const size_t at = log.find("http://");
  if (at == std::string::npos) return "";
  const size_t end = log.find('/', at + 7);
  return log.substr(at + 7, end - at - 7);
}

std::string Get(const std::string& url) {
  return testing::Run({"/usr/bin/curl", "-sf", url}).out;
}

// Checks the text format: HELP/TYPE comments, then `name{labels} value`.
void ExpectValidPrometheus(const std::string& text, std::set<std::string>* names) {
  static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? (-?[0-9.eE+-]+|\+Inf|NaN)$)");
  static const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$)");
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::string l(line);
    std::smatch m;
    if (l[0] == '#') {
      EXPECT_TRUE(std::regex_match(l, comment)) << l;
    } else {
      ASSERT_TRUE(std::regex_match(l, m, sample)) << l;
      names->insert(m[1]);
    }
  }
}

// True if `text` has a line that is exactly `series`: name, labels and
// value. (A substring or prefix match would take "x_total 3" for
// "x_total 30", or a label from another series.)
bool HasSeries(const std::string& text, const std::string& series) {
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    if (l == series) return true;
  }
  return false;
}

TEST(Observability, LogLinesHaveFixedColumns) {
  logging::Where where;
  EXPECT_EQ(logging::FormatLine(1795372200123456, "cairn-writer", where, "metrics on http://x/"),
            "2026-11-22T18:30:00.123456Z cairn-writer job=- step=- shard=- metrics on http://x/\n");
  where.job = "bert";
  where.step = 0;
  EXPECT_EQ(logging::FormatLine(0, "p", where, "two\nlines\r"),
            "1970-01-01T00:00:00.000000Z p job=bert step=0 shard=- two\\nlines\\r\n");
  where.shard = 3;
  where.num_shards = 8;
  EXPECT_EQ(logging::FormatLine(0, "p", where, "m"),
            "1970-01-01T00:00:00.000000Z p job=bert step=0 shard=3/8 m\n");
}

// Every line the servers log names job, step and shard (or "-"), so one
// grep finds a checkpoint's story across coordinator and writers.
TEST(Observability, EveryServerLogLineNamesJobStepAndShard) {
  testing::TempDir dir;
  testing::Cluster cluster(dir.path(), 2);
  ASSERT_TRUE(cluster.ok());
  const std::string coord = "--coordinator=" + cluster.coordinator();
  const std::string cairn = testing::BinPath("cairn");
  for (int shard : {0, 1}) {
    std::vector<SafetensorsTensor> infos = {{absl::StrCat("w", shard), DataType::kFloat, {1024}}};
    const std::string file = dir.Join(absl::StrCat("w", shard, ".safetensors"));
    testing::WriteFile(file, *BuildSafetensorsPrefix(&infos, {}) + std::string(4096, 'x'));
    auto r = testing::Run({cairn, "save", coord, "--job=logged", "--step=7", "--from=" + file,
                           absl::StrCat("--shard=", shard, "/2")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ASSERT_EQ(testing::Run({cairn, "pin", coord, "--job=logged", "--step=7"}).exit_code, 0);
  ASSERT_EQ(testing::Run({cairn, "policy", coord, "--job=logged", "--keep-last=1"}).exit_code, 0);
  auto restored = testing::Run({cairn, "restore", coord, "--job=logged", "--to=" + dir.Join("out.safetensors")});
  ASSERT_EQ(restored.exit_code, 0) << restored.err;

  static const std::regex line_re(
      R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z cairn-(coordinator|writer) job=\S+ step=(-|\d+) shard=(-|\d+/\d+) .+$)");
  std::string all;
  for (const std::string& log : {cluster.coordinator_log(), dir.Join("writer0.log"), dir.Join("writer1.log")}) {
    const std::string text = testing::ReadFile(log);
    int lines = 0;
    for (absl::string_view l : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      if (absl::StartsWith(l, "listening on ")) continue;  // the address marker, on stdout
      EXPECT_TRUE(std::regex_match(std::string(l), line_re)) << log << ": " << l;
      ++lines;
    }
    EXPECT_GT(lines, 0) << log;
    all += text;
  }
  for (const char* want : {"job=logged step=7 shard=0/2 shard assigned to writer",
                           "job=logged step=7 shard=1/2 shard assigned to writer",
                           "job=logged step=7 shard=0/2 shard durable: 1 tensors",
                           "job=logged step=7 shard=1/2 shard durable: 1 tensors",
                           "cairn-coordinator job=logged step=7 shard=- committed: 2 shards",
                           "job=logged step=7 shard=- pinned",
                           "job=logged step=- shard=- retention policy",
                           "job=logged step=7 shard=- lease ", " released"}) {
    EXPECT_NE(all.find(want), std::string::npos) << "no log line with \"" << want << "\" in\n" << all;
  }
}

// Minor page faults of a process so far (/proc/PID/stat field 10), or -1.
int64_t MinorFaults(pid_t pid) {
  const std::string stat = testing::ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t comm_end = stat.rfind(')');
  if (comm_end == std::string::npos) return -1;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(comm_end + 2), ' ');
  return fields.size() > 7 ? std::stoll(fields[7]) : -1;  // field 10 is the 8th after comm
}

TEST(Observability, AWriterReusesItsMemoryAcrossWavesAndHandsItBackWhenIdle) {
  // Streams arrive in waves (the shards of a checkpoint, checkpoints saved
  // often). A writer that returned its freed memory after every wave faulted
  // all of it in again for the next (~10% of its CPU per byte); it now keeps
  // it until it has been idle for 10 s, then hands it back.
  testing::TempDir dir;
  testing::Cluster cluster(dir.path(), 1, {}, {}, {"--metrics-listen=127.0.0.1:0"});
  ASSERT_TRUE(cluster.ok());
  ClientOptions options;
  options.coordinator = cluster.coordinator();
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  const std::string bytes = testing::PatternBytes(32 << 20, 7);
  std::vector<SaveTensor> tensors(1);
  tensors[0].name = "w";
  tensors[0].dtype = DataType::kFloat;
  tensors[0].shape = {8 << 20};
  tensors[0].data = bytes;
  const pid_t writer = cluster.writer_process(0).pid();
  std::vector<int64_t> faults;  // of each wave
  for (int64_t step = 1; step <= 5; ++step) {
    const int64_t before = MinorFaults(writer);
    auto saved = (*client)->SaveShard({"waves", step, 0, 1, {}}, tensors);
    ASSERT_TRUE(saved.ok()) << saved.status();
    faults.push_back(MinorFaults(writer) - before);
  }
  std::cout << "writer minor faults per wave:";
  for (int64_t f : faults) std::cout << " " << f;
  std::cout << std::endl;
#if !defined(__SANITIZE_ADDRESS__)  // (ASan's allocator hands out fresh memory by design)
  // The first waves fault memory in (the writer's two malloc heaps, gRPC's
  // adaptive read buffers); later ones mostly reuse it (waves 3-5 together:
  // 0.1-0.75 of the first, measured). Returned after every wave, each
  // faulted about as much as the first (together 1.4-2.4 of it).
  ASSERT_GT(faults[0], 1000) << "the first wave faults its memory in";
  EXPECT_LT(faults[2] + faults[3] + faults[4], faults[0] * 5 / 4)
      << "waves 3-5 together fault little more than the first alone";
#endif

  const std::string writer_http = HttpAddress(dir.Join("writer0.log"));
  ASSERT_FALSE(writer_http.empty());
  std::string metrics;
  for (int i = 0; i < 250 && !HasSeries(metrics, "cairn_writer_memory_trims_total 1"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    metrics = Get("http://" + writer_http + "/metrics");
  }
  EXPECT_TRUE(HasSeries(metrics, "cairn_writer_memory_trims_total 1"))
      << "an idle writer hands its memory back once\n" << metrics;
}

TEST(Observability, MetricsStatusJsonAndHealth) {
  testing::TempDir dir;
  testing::Cluster cluster(dir.path(), 1, {"--metrics-listen=127.0.0.1:0"}, {},
                           {"--metrics-listen=127.0.0.1:0"});
  ASSERT_TRUE(cluster.ok());
  std::vector<SafetensorsTensor> infos = {{"w", DataType::kFloat, {1024}}};
  const std::string file = dir.Join("w.safetensors");
  testing::WriteFile(file, *BuildSafetensorsPrefix(&infos, {}) + std::string(4096, 'x'));
  for (int step : {1, 2, 3}) {
    auto r = testing::Run({testing::BinPath("cairn"), "save", "--coordinator=" + cluster.coordinator(),
                           "--job=observed", absl::StrCat("--step=", step), "--from=" + file,
                           "--metric=loss=0.5"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ASSERT_EQ(testing::Run({testing::BinPath("cairn"), "policy", "--coordinator=" + cluster.coordinator(),
                          "--job=observed", "--keep-last=2"}).exit_code, 0);
  auto shown = testing::Run({testing::BinPath("cairn"), "policy", "--coordinator=" + cluster.coordinator(),
                             "--job=observed", "--show", "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("\"keep_last\": 2"), std::string::npos) << shown.out;
  ASSERT_EQ(testing::Run({testing::BinPath("cairn"), "pin", "--coordinator=" + cluster.coordinator(),
                          "--job=observed", "--step=1"}).exit_code, 0);
  // A bad request is counted as an error.
  testing::Run({testing::BinPath("cairn"), "save", "--coordinator=" + cluster.coordinator(), "--job=observed",
                "--step=9", "--from=" + file, "--shard=0/2"});
  testing::Run({testing::BinPath("cairn"), "save", "--coordinator=" + cluster.coordinator(), "--job=observed",
                "--step=9", "--from=" + file, "--shard=1/3"});
  // A pending step aborted by a rollback (job "rolled"): counted by reason.
  for (const std::string shard : {"0/1", "0/2"}) {
    auto r = testing::Run({testing::BinPath("cairn"), "save", "--coordinator=" + cluster.coordinator(),
                           "--job=rolled", shard == "0/1" ? "--step=1" : "--step=2", "--from=" + file,
                           "--shard=" + shard});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ASSERT_EQ(testing::Run({testing::BinPath("cairn"), "rollback", "--coordinator=" + cluster.coordinator(),
                          "--job=rolled", "--to=1"}).exit_code, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // gauges refresh each second

  const std::string coordinator_http = HttpAddress(cluster.coordinator_log());
  const std::string writer_http = HttpAddress(dir.Join("writer0.log"));
  ASSERT_FALSE(coordinator_http.empty());
  ASSERT_FALSE(writer_http.empty());
  std::set<std::string> names;
  const std::string coordinator_metrics = Get("http://" + coordinator_http + "/metrics");
  ExpectValidPrometheus(coordinator_metrics, &names);
  for (const char* n : {"cairn_commits_total", "cairn_commit_seconds_bucket", "cairn_commit_seconds_sum",
                        "cairn_commit_seconds_count", "cairn_retention_deletions_total",
                        "cairn_checkpoints_pending", "cairn_rpc_errors_total", "cairn_writers_live"}) {
    EXPECT_TRUE(names.count(n)) << n << " missing from\n" << coordinator_metrics;
  }
  EXPECT_TRUE(HasSeries(coordinator_metrics, "cairn_commits_total 4")) << coordinator_metrics;
  // What an operator alerts on: the age of each job's newest commit; aborts
  // by reason; which build runs. And bucket bounds as Prometheus writes them.
  for (const char* job : {"observed", "rolled"}) {
    const std::string series = absl::StrCat("cairn_job_last_commit_timestamp_seconds{job=\"", job, "\"} ");
    const size_t at = coordinator_metrics.find(series);
    ASSERT_NE(at, std::string::npos) << series << " missing from\n" << coordinator_metrics;
    const double t = std::strtod(coordinator_metrics.c_str() + at + series.size(), nullptr);
    EXPECT_NEAR(t, static_cast<double>(::time(nullptr)), 120) << series;
  }
  EXPECT_TRUE(HasSeries(coordinator_metrics, "cairn_aborts_total{reason=\"rollback\"} 1")) << coordinator_metrics;
  EXPECT_TRUE(absl::StrContains(coordinator_metrics, "cairn_build_info{component=\"coordinator\",version=\""))
      << coordinator_metrics;
  EXPECT_TRUE(absl::StrContains(coordinator_metrics, "cairn_commit_seconds_bucket{le=\"0.004\"}"))
      << coordinator_metrics;
  // The refused shard 1/3 of step 9 (begun with 2 shards).
  EXPECT_TRUE(HasSeries(coordinator_metrics,
                        "cairn_rpc_errors_total{code=\"INVALID_ARGUMENT\",method=\"BeginShard\"} 1"))
      << coordinator_metrics;
  names.clear();
  const std::string writer_metrics = Get("http://" + writer_http + "/metrics");
  ExpectValidPrometheus(writer_metrics, &names);
  for (const char* n : {"cairn_writer_bytes_received_total", "cairn_writer_bytes_written_total",
                        "cairn_writer_shard_save_seconds_bucket", "cairn_writer_active_streams"}) {
    EXPECT_TRUE(names.count(n)) << n << " missing from\n" << writer_metrics;
  }
  // Six shards of 4096 bytes reached the writer and were made durable:
  // steps 1-3, shard 0/2 of step 9 (still pending), and job rolled's two.
  EXPECT_TRUE(HasSeries(writer_metrics, "cairn_writer_bytes_received_total 24576")) << writer_metrics;
  EXPECT_TRUE(HasSeries(writer_metrics, "cairn_writer_bytes_written_total 24576")) << writer_metrics;
  // Failure series exist before any failure (an increase() sees the first).
  EXPECT_TRUE(HasSeries(writer_metrics, "cairn_writer_errors_total{code=\"DATA_LOSS\"} 0")) << writer_metrics;

  // gRPC health checking on both servers.
  for (const std::string& address : {cluster.coordinator(), cluster.writer_process(0).address()}) {
    auto stub = grpc::health::v1::Health::NewStub(rpc::NewChannel(address));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    auto ctx = rpc::Context(std::chrono::seconds(5));
    grpc::Status s = stub->Check(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << address << ": " << s.error_message();
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << address;
  }

  // The status page and its JSON.
  EXPECT_NE(Get("http://" + coordinator_http + "/").find("<title>Cairn status</title>"), std::string::npos);
  const std::string jobs = Get("http://" + coordinator_http + "/api/jobs");
  EXPECT_NE(jobs.find("\"job\":\"observed\""), std::string::npos) << jobs;
  const std::string job = Get("http://" + coordinator_http + "/api/jobs/observed");
  EXPECT_NE(job.find("\"kept_by\":[\"pinned\"]"), std::string::npos) << job;
  EXPECT_NE(job.find("\"state\":\"pending\""), std::string::npos) << job;
  EXPECT_NE(job.find("keep-last=2"), std::string::npos) << job;

  // The overview's JSON: writers (with the load their heartbeats report),
  // version, uptime, each job's newest commit; the job's: shard progress.
  EXPECT_NE(jobs.find("\"writers\":[{"), std::string::npos) << jobs;
  EXPECT_NE(jobs.find("\"version\":\""), std::string::npos) << jobs;
  EXPECT_NE(jobs.find("\"uptime_seconds\":"), std::string::npos) << jobs;
  EXPECT_NE(jobs.find("\"last_commit_at\":"), std::string::npos) << jobs;
  EXPECT_NE(jobs.find("\"bytes_written\":"), std::string::npos) << jobs;
  EXPECT_NE(job.find("\"durable_shards\":[0]"), std::string::npos) << "step 9: shard 0 of 2 durable\n" << job;
  EXPECT_NE(job.find("\"shards_durable\":1"), std::string::npos) << job;
  // The page in a browser: tests/status_page_test.py (headless Chromium).
}

}  // namespace
}  // namespace cairn
