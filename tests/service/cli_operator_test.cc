// Issue #17's CLI, as an operator meets it: real coordinator and writer
// processes, the release `cairn` binary, exact messages and exit codes.
// Each test failed before its change.
#include <filesystem>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "storage/bundle/safetensors.h"
#include "tests/testing/etcd.h"
#include "tests/testing/process.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::BinPath;
using testing::Cluster;
using testing::RunResult;

using testing::RunCairn;
RunResult Cairn(std::vector<std::string> args) { return RunCairn(std::move(args)); }

class CliOperatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<Cluster>(dir_.path(), 2);
    ASSERT_TRUE(cluster_->ok());
    addr_ = "--coordinator=" + cluster_->coordinator();
  }
  std::string File(uint32_t seed, const std::string& tensor = "w") {
    return testing::WriteOneTensorFile(dir_.path(), seed, tensor);
  }
  RunResult Save(const std::string& job, int64_t step, std::vector<std::string> extra = {},
                 const std::string& tensor = "w") {
    std::vector<std::string> args = {"save", addr_, "--job=" + job, absl::StrCat("--step=", step),
                                     "--from=" + File(static_cast<uint32_t>(step), tensor)};
    args.insert(args.end(), extra.begin(), extra.end());
    return Cairn(args);
  }
  std::unique_ptr<Client> Connect() {
    ClientOptions options;
    options.coordinator = cluster_->coordinator();
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return std::move(client).value();
  }
  // Waits until `job`/`step` has `durable` shards durable (and is pending).
  bool WaitDurable(const std::string& job, int64_t step, int durable) {
    auto client = Connect();
    for (int i = 0; i < 300; ++i) {
      ListOptions options;
      options.include_uncommitted = true;
      auto list = client->List(job, options);
      if (list.ok()) {
        for (const auto& c : *list) {
          if (c.step == step && c.shards_durable == durable) return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  testing::TempDir dir_;
  std::unique_ptr<Cluster> cluster_;
  std::string addr_;
};

TEST_F(CliOperatorTest, FlagsTakeAValueAfterASpaceAndTyposGetADidYouMean) {
  ASSERT_EQ(Save("j", 1).exit_code, 0);
  // --flag value, mixed with --flag=value.
  RunResult spaced = Cairn({"restore", "--coordinator", cluster_->coordinator(), "--job", "j",
                            "--step", "1", "--to", dir_.Join("out.safetensors")});
  EXPECT_EQ(spaced.exit_code, 0) << spaced.err;
  EXPECT_TRUE(std::filesystem::exists(dir_.Join("out.safetensors")));

  RunResult typo = Cairn({"restore", addr_, "--job=j", "--setp=1", "--to=x.safetensors"});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_EQ(typo.err,
            "cairn: unknown option --setp (did you mean --step?)\n"
            "Run 'cairn restore --help' for usage.\n");
  RunResult command = Cairn({"restroe", addr_});
  EXPECT_EQ(command.exit_code, 2);
  EXPECT_EQ(command.err,
            "cairn: unknown command \"restroe\" (did you mean \"restore\"?)\n"
            "Run 'cairn --help' for usage.\n");
  RunResult missing = Cairn({"list", addr_, "--job"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(absl::StartsWith(missing.err, "cairn: --job needs a value: --job=VALUE or --job VALUE\n"))
      << missing.err;
}

TEST_F(CliOperatorTest, TheCoordinatorComesFromTheEnvironment) {
  ASSERT_EQ(Save("j", 1).exit_code, 0);
  RunResult r = testing::Run({"/usr/bin/env", "CAIRN_COORDINATOR=" + cluster_->coordinator(),
                              BinPath("cairn"), "jobs"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "j ")) << r.out;
  RunResult none = testing::Run({"/usr/bin/env", "-u", "CAIRN_COORDINATOR", BinPath("cairn"), "jobs"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_EQ(none.err,
            "cairn: --coordinator=ADDR is required (or set CAIRN_COORDINATOR)\n"
            "Run 'cairn jobs --help' for usage.\n");
}

TEST_F(CliOperatorTest, JobsListsEveryJobWithItsNewestCommit) {
  ASSERT_EQ(Save("alpha", 3).exit_code, 0);
  ASSERT_EQ(Save("alpha", 5).exit_code, 0);
  ASSERT_EQ(Save("beta", 7).exit_code, 0);
  ASSERT_EQ(Cairn({"policy", addr_, "--job=gamma", "--keep-last=2"}).exit_code, 0);
  RunResult table = Cairn({"jobs", addr_});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  const std::vector<std::string> lines = absl::StrSplit(table.out, '\n');
  ASSERT_EQ(lines.size(), 5u) << table.out;  // header, 3 jobs, ""
  EXPECT_EQ(lines[0], "JOB    NEWEST  AGE  COMMITTED  PENDING  ABORTED    BYTES");
  EXPECT_TRUE(absl::StartsWith(lines[1], "alpha       5   ")) << lines[1];
  EXPECT_TRUE(absl::StrContains(lines[1], "          2        0        0  ")) << lines[1];
  EXPECT_TRUE(absl::StartsWith(lines[2], "beta        7   ")) << lines[2];
  EXPECT_EQ(lines[3], "gamma       -    -          0        0        0      0 B");
  RunResult json = Cairn({"jobs", addr_, "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_TRUE(absl::StrContains(json.out, "\"job\": \"gamma\",\n      \"newest_step\": null"))
      << json.out;
  EXPECT_TRUE(absl::StrContains(json.out, "\"job\": \"beta\",\n      \"newest_step\": 7")) << json.out;
}

TEST_F(CliOperatorTest, ListAllShowsPendingProgressAndAbortReasonsAndATypoFails) {
  ASSERT_EQ(Save("j", 100).exit_code, 0);
  // Step 200: one shard of two, then aborted by a rollback.
  ASSERT_EQ(Save("j", 200, {"--shard=0/2"}).exit_code, 0);
  RunResult pending = Cairn({"list", addr_, "--job=j", "--all"});
  ASSERT_EQ(pending.exit_code, 0) << pending.err;
  EXPECT_TRUE(absl::StrContains(pending.out, "STEP  STATE      COMMITTED")) << pending.out;
  EXPECT_TRUE(absl::StrContains(pending.out, "\n 200  pending    -  ")) << pending.out;
  EXPECT_TRUE(absl::StrContains(pending.out, "1/2")) << pending.out;
  EXPECT_TRUE(absl::StrContains(pending.out, "1 of 2 shards durable, started ")) << pending.out;
  // Without --all: committed only, as before.
  RunResult committed = Cairn({"list", addr_, "--job=j"});
  EXPECT_FALSE(absl::StrContains(committed.out, "200")) << committed.out;

  ASSERT_EQ(Cairn({"rollback", addr_, "--job=j", "--to=100"}).exit_code, 0);
  RunResult aborted = Cairn({"list", addr_, "--job=j", "--all"});
  EXPECT_TRUE(absl::StrContains(aborted.out, "\n 200  aborted  ")) << aborted.out;
  EXPECT_TRUE(absl::EndsWith(aborted.out, "rolled back to step 100\n")) << aborted.out;
  RunResult json = Cairn({"list", addr_, "--job=j", "--all", "--json"});
  EXPECT_TRUE(absl::StrContains(json.out, "\"state\": \"aborted\"")) << json.out;
  EXPECT_TRUE(absl::StrContains(json.out, "\"committed_at\": null")) << json.out;
  EXPECT_TRUE(absl::StrContains(json.out, "\"abort_reason\": \"rolled back to step 100\"")) << json.out;
  EXPECT_TRUE(absl::StrContains(json.out, "\"shards_durable\": 1")) << json.out;

  RunResult typo = Cairn({"list", addr_, "--job=jj"});
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_EQ(typo.err, "cairn: no job named jj (did you mean j?)\n");
  RunResult unknown = Cairn({"list", addr_, "--job=zzzzzz"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.err, "cairn: no job named zzzzzz ('cairn jobs' lists the jobs)\n");
  // A job with only a policy exists: its empty list is no error.
  ASSERT_EQ(Cairn({"policy", addr_, "--job=fresh", "--keep-last=1"}).exit_code, 0);
  RunResult fresh = Cairn({"list", addr_, "--job=fresh"});
  EXPECT_EQ(fresh.exit_code, 0) << fresh.err;
  EXPECT_EQ(fresh.out, "job fresh: no committed checkpoints\n");
}

TEST_F(CliOperatorTest, DeleteRefusesTheNewestPinnedAndLeasedUnlessForced) {
  for (int64_t step : {1, 2, 3, 4}) ASSERT_EQ(Save("j", step).exit_code, 0);
  const std::string storage = cluster_->storage_dir();
  RunResult newest = Cairn({"delete", addr_, "--job=j", "--step=4"});
  EXPECT_EQ(newest.exit_code, 1);
  EXPECT_EQ(newest.err,
            "cairn: deleting j/4: refusing to delete step 4 of job j: it is the job's newest "
            "(--force deletes it anyway)\n");
  ASSERT_EQ(Cairn({"pin", addr_, "--job=j", "--step=2"}).exit_code, 0);
  RunResult pinned = Cairn({"delete", addr_, "--job=j", "--step=2"});
  EXPECT_EQ(pinned.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(pinned.err, ": it is pinned (--force")) << pinned.err;
  auto client = Connect();
  auto lease = client->AcquireLease("j", 3, 60000);
  ASSERT_TRUE(lease.ok()) << lease.status();
  RunResult leased = Cairn({"delete", addr_, "--job=j", "--step=3"});
  EXPECT_EQ(leased.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(leased.err, ": a restore holds a lease on it (--force")) << leased.err;
  EXPECT_TRUE(std::filesystem::exists(storage + "/j/ckpt-3/variables.index"));

  RunResult ok = Cairn({"delete", addr_, "--job=j", "--step=1"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, "deleted j/1\n");
  EXPECT_FALSE(std::filesystem::exists(storage + "/j/ckpt-1"));
  EXPECT_FALSE(absl::StrContains(testing::ReadFile(storage + "/j/checkpoint"), "ckpt-1/"));
  RunResult again = Cairn({"delete", addr_, "--job=j", "--step=1"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_EQ(again.err, "cairn: deleting j/1: job j has no committed checkpoint at step 1\n");

  RunResult forced = Cairn({"delete", addr_, "--job=j", "--step=4", "--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_FALSE(std::filesystem::exists(storage + "/j/ckpt-4"));
  // The state file now names step 3 as the newest.
  EXPECT_TRUE(absl::StartsWith(testing::ReadFile(storage + "/j/checkpoint"),
                               "model_checkpoint_path: \"ckpt-3/variables\""));
  EXPECT_EQ(Cairn({"delete", addr_, "--job=j"}).exit_code, 2);
}

TEST_F(CliOperatorTest, SaveWaitReturnsWhenTheStepCommitsOrAborts) {
  ASSERT_EQ(Save("j", 100).exit_code, 0);
  // Commits: shard 0 waits until shard 1 completes the step.
  RunResult first;
  std::thread waiter([&] { first = Save("j", 200, {"--shard=0/2", "--wait"}); });
  EXPECT_TRUE(WaitDurable("j", 200, 1));
  RunResult second = Save("j", 200, {"--shard=1/2"}, "v");
  waiter.join();
  EXPECT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_TRUE(absl::EndsWith(first.out, "checkpoint j/200 committed\n")) << first.out;

  // Without --wait a non-last shard says the step is still pending.
  RunResult early = Save("j", 250, {"--shard=0/2"});
  EXPECT_EQ(early.exit_code, 0) << early.err;
  EXPECT_TRUE(absl::EndsWith(early.out, "checkpoint j/250 is pending: it commits once all 2 shards "
                                        "are saved (--wait waits for that)\n"))
      << early.out;
  ASSERT_EQ(Save("j", 250, {"--shard=1/2"}, "v").exit_code, 0);

  // Aborts: the reason is the error.
  RunResult aborted;
  std::thread waiter2([&] { aborted = Save("j", 300, {"--shard=0/2", "--wait"}); });
  EXPECT_TRUE(WaitDurable("j", 300, 1));
  RunResult rollback = Cairn({"rollback", addr_, "--job=j", "--to=200"});
  waiter2.join();
  ASSERT_EQ(rollback.exit_code, 0) << rollback.err;
  EXPECT_EQ(aborted.exit_code, 1) << aborted.out;
  EXPECT_EQ(aborted.err, "cairn: step 300 of job j was aborted: rolled back to step 200\n");
}

TEST_F(CliOperatorTest, InspectTakesADirectoryOrTheCoordinatorForm) {
  ASSERT_EQ(Save("j", 4).exit_code, 0);
  const std::string dir = cluster_->storage_dir() + "/j/ckpt-4";
  RunResult by_prefix = Cairn({"inspect", dir + "/variables"});
  ASSERT_EQ(by_prefix.exit_code, 0) << by_prefix.err;
  for (const std::string& arg : {dir, dir + "/", dir + "/variables.index"}) {
    RunResult r = Cairn({"inspect", arg});
    EXPECT_EQ(r.exit_code, 0) << arg << ": " << r.err;
    EXPECT_EQ(r.out, by_prefix.out) << arg;
  }
  // Through the coordinator: the same, named by its URI.
  RunResult via = Cairn({"inspect", addr_, "--job=j", "--step=4"});
  EXPECT_EQ(via.exit_code, 0) << via.err;
  EXPECT_EQ(via.out, absl::StrCat("checkpoint file://",
                                  by_prefix.out.substr(std::string("checkpoint ").size())));
  RunResult newest = Cairn({"inspect", addr_, "--job=j", "--json"});
  EXPECT_EQ(newest.exit_code, 0) << newest.err;
  EXPECT_TRUE(absl::StrContains(newest.out, "\"name\": \"w\"")) << newest.out;
  RunResult both = Cairn({"inspect", dir, addr_, "--job=j"});
  EXPECT_EQ(both.exit_code, 2);
  RunResult none = Cairn({"inspect", addr_, "--job=j", "--step=5"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(none.err, "job j has no committed checkpoint at step 5")) << none.err;
}

TEST_F(CliOperatorTest, SmallerThingsAnOperatorTripsOver) {
  ASSERT_EQ(Save("j", 4, {"--metric=loss=0.5"}).exit_code, 0);
  const std::string prefix = cluster_->storage_dir() + "/j/ckpt-4/variables";
  // save --from=<a checkpoint> says what it expects.
  RunResult from = Cairn({"save", addr_, "--job=j", "--step=5", "--from=" + prefix});
  EXPECT_EQ(from.exit_code, 2);
  EXPECT_EQ(from.err, absl::StrCat("cairn: --from=", prefix,
                                   " is a checkpoint, not a .safetensors file; save expects a "
                                   ".safetensors file (cairn convert ",
                                   prefix, " FILE.safetensors makes one)\n"
                                   "Run 'cairn save --help' for usage.\n"));
  // convert says what it did.
  RunResult convert = Cairn({"convert", prefix, dir_.Join("c.safetensors")});
  EXPECT_EQ(convert.exit_code, 0) << convert.err;
  EXPECT_EQ(convert.out, absl::StrCat("converted ", prefix, " to ", dir_.Join("c.safetensors"), "\n"));
  // A keep-best metric no checkpoint has is refused, unless forced.
  RunResult metric = Cairn({"policy", addr_, "--job=j", "--keep-best=1", "--metric=los"});
  EXPECT_EQ(metric.exit_code, 1);
  EXPECT_EQ(metric.err,
            "cairn: job j: no committed checkpoint has a metric \"los\" (did you mean \"loss\"?); "
            "they have \"loss\". --force sets the policy anyway\n");
  EXPECT_EQ(Cairn({"policy", addr_, "--job=j", "--keep-best=1", "--metric=los", "--force"}).exit_code, 0);
  EXPECT_EQ(Cairn({"policy", addr_, "--job=j", "--keep-best=1", "--metric=loss"}).exit_code, 0);
  // Every command's --help has an example.
  for (const char* command : {"inspect", "verify", "convert", "save", "restore", "list", "jobs",
                              "adopt", "policy", "pin", "gc", "rollback", "delete", "token",
                              "completion"}) {
    RunResult help = Cairn({command, "--help"});
    EXPECT_EQ(help.exit_code, 0) << command;
    EXPECT_TRUE(absl::StrContains(help.out, "Example")) << command << ":\n" << help.out;
  }
}

TEST_F(CliOperatorTest, AServersOwnUnavailableIsNotCalledUnreachable) {
  // A coordinator without writers answers BeginShard itself: the message
  // names the cause, not the network.
  testing::TempDir other;
  Cluster lonely(other.path(), 0);
  ASSERT_TRUE(lonely.ok());
  RunResult r = Cairn({"save", "--coordinator=" + lonely.coordinator(), "--job=j", "--step=1",
                       "--from=" + File(1)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(absl::StrContains(r.err, "unreachable")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "no live shard writers")) << r.err;
  // A coordinator that is not there is called unreachable.
  const std::string gone = lonely.coordinator();
  lonely.coordinator_process().Stop();
  RunResult down = Cairn({"jobs", "--coordinator=" + gone});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(down.err, "coordinator " + gone + " unreachable")) << down.err;
}

TEST_F(CliOperatorTest, AWriterWaitingForItsCoordinatorSaysSoAndStopsOnSigterm) {
  const std::string coordinator = absl::StrCat("127.0.0.1:", testing::FreePort());
  const std::string log = dir_.Join("lonely-writer.log");
  testing::ServerProcess writer({BinPath("cairn-writer"), "--coordinator=" + coordinator,
                                 "--listen=127.0.0.1:0", "--storage=" + dir_.Join("s")},
                                log, /*wait_ms=*/0);
  // It says what it waits for, at once.
  bool said = false;
  for (int i = 0; i < 100 && !said; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    said = absl::StrContains(testing::ReadFile(log), "waiting for coordinator " + coordinator);
  }
  EXPECT_TRUE(said) << testing::ReadFile(log);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(writer.Stop(), 0) << testing::ReadFile(log);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_TRUE(absl::StrContains(testing::ReadFile(log), "stopped while waiting for coordinator"))
      << testing::ReadFile(log);
}

// With an address list, a call waits for a coordinator to come up (a
// failover): it must get through once one listens and the channel's next
// reconnect comes (its backoff is capped at 2 s), not when gRPC's backup
// poller next looks at the channel (this took 14 s).
TEST_F(CliOperatorTest, ACallOverAnAddressListGetsThroughAsSoonAsACoordinatorListens) {
  const std::string dead = absl::StrCat("127.0.0.1:", testing::FreePort());
  const std::string later = absl::StrCat("127.0.0.1:", testing::FreePort());
  RunResult list;
  std::chrono::steady_clock::time_point done;
  std::thread caller([&] {
    list = Cairn({"jobs", "--coordinator=" + dead + "," + later});
    done = std::chrono::steady_clock::now();
  });
  // Long enough for the channel's reconnect backoff to reach its cap.
  std::this_thread::sleep_for(std::chrono::seconds(6));
  testing::ServerProcess coordinator(
      {BinPath("cairn-coordinator"), "--listen=" + later, "--db=" + dir_.Join("db2"),
       "--storage=" + dir_.Join("storage2")},
      dir_.Join("later.log"));
  const auto listening = std::chrono::steady_clock::now();
  caller.join();
  ASSERT_FALSE(coordinator.address().empty()) << testing::ReadFile(dir_.Join("later.log"));
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_LT(done - listening, std::chrono::milliseconds(3500));
}

TEST_F(CliOperatorTest, BashCompletionOffersCommandsAndFlags) {
  RunResult script = Cairn({"completion", "bash"});
  ASSERT_EQ(script.exit_code, 0) << script.err;
  const std::string file = dir_.Join("cairn.bash");
  testing::WriteFile(file, script.out);
  auto complete = [&](const std::string& words, int cword) {
    RunResult r = testing::Run(
        {"/bin/bash", "-c",
         absl::StrCat("source ", file, "; COMP_WORDS=(", BinPath("cairn"), " ", words,
                      "); COMP_CWORD=", cword, "; _cairn; echo \"${COMPREPLY[*]}\"")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  EXPECT_EQ(complete("li", 1), "list\n");
  EXPECT_EQ(complete("de", 1), "delete\n");
  EXPECT_EQ(complete("list --j", 2), "--job --json\n");
  EXPECT_EQ(complete("delete --f", 2), "--force\n");
  EXPECT_EQ(Cairn({"completion", "zsh"}).exit_code, 2);
}

}  // namespace
}  // namespace cairn
