// `cairn policy`, `pin`, `unpin` and `gc` as real processes against the fake
// coordinator: flags to requests, text and JSON output, usage errors.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/cairn.pb.h"
#include "tests/client/client_fixture.h"
#include "tests/client/fake_service.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace client_test {
namespace {

using testing::RunResult;

TEST_F(FakeService, CliPolicyFlagsMapToTheRequest) {
  const std::string coord = "--coordinator=" + coordinator_address_;
  RunResult r = Cairn({"policy", coord, "--job=j", "--keep-last=3", "--keep-every-steps=1000",
                       "--keep-every-hours=0.5", "--keep-best=2", "--metric=loss", "--mode=max"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "retention policy of job j: keep-last=3 keep-every-steps=1000 keep-every-hours=0.5 "
            "keep-best=2(loss,max)\n");
  auto sets = coordinator_.set_policies();
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(sets[0].job(), "j");
  EXPECT_EQ(sets[0].policy().keep_last(), 3);
  EXPECT_EQ(sets[0].policy().keep_every_steps(), 1000);
  EXPECT_EQ(sets[0].policy().keep_every_hours(), 0.5);
  EXPECT_EQ(sets[0].policy().keep_best(), 2);
  EXPECT_EQ(sets[0].policy().metric(), "loss");
  EXPECT_TRUE(sets[0].policy().maximize());

  // Only the rules given; --mode defaults to min; the new policy replaces the old.
  r = Cairn({"policy", coord, "--job=j", "--keep-best=1", "--metric=acc"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "retention policy of job j: keep-best=1(acc,min)\n");
  sets = coordinator_.set_policies();
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[1].policy().keep_last(), 0);
  EXPECT_EQ(sets[1].policy().keep_every_steps(), 0);
  EXPECT_EQ(sets[1].policy().keep_every_hours(), 0);
  EXPECT_EQ(sets[1].policy().keep_best(), 1);
  EXPECT_EQ(sets[1].policy().metric(), "acc");
  EXPECT_FALSE(sets[1].policy().maximize());

  // No rule flags: the policy is cleared (keep everything).
  r = Cairn({"policy", coord, "--job=j"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "retention policy of job j: none (keep everything)\n");
  sets = coordinator_.set_policies();
  ASSERT_EQ(sets.size(), 3u);
  EXPECT_EQ(sets[2].policy().SerializeAsString(), "");  // every field at its default

  // --show reads the policy without setting one.
  ASSERT_EQ(Cairn({"policy", coord, "--job=j", "--keep-last=5", "--keep-every-hours=24"}).exit_code,
            0);
  r = Cairn({"policy", coord, "--job=j", "--show"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "retention policy of job j: keep-last=5 keep-every-hours=24\n");
  EXPECT_EQ(coordinator_.set_policies().size(), 4u);
  ASSERT_EQ(coordinator_.get_policies().size(), 1u);
  EXPECT_EQ(coordinator_.get_policies()[0].job(), "j");
  r = Cairn({"policy", coord, "--job=fresh", "--show"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "retention policy of job fresh: none (keep everything)\n");

  // Usage errors: exit 2, nothing sent.
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--keep-best=2"},
           {"--metric=loss"},
           {"--keep-best=0", "--metric=loss"},
           {"--mode=max"},
           {"--keep-best=1", "--metric=loss", "--mode=median"},
           {"--keep-best=1", "--metric="},
           {"--keep-best=1", "--metric"},
           {"--keep-best=-1", "--metric=loss"},
           {"--keep-last=-1"},
           {"--keep-last=x"},
           {"--keep-last"},
           {"--keep-every-steps=-2"},
           {"--keep-every-hours=-1"},
           {"--keep-every-hours=nan"},
           {"--keep-every-hours=inf"},
           {"--keep-every-hours=abc"},
           {"--show", "--keep-last=1"},
           {"--keep-latest=1"},
           {"extra"}}) {
    std::vector<std::string> args = {"policy", coord, "--job=j"};
    args.insert(args.end(), bad.begin(), bad.end());
    r = Cairn(args);
    EXPECT_EQ(r.exit_code, 2) << bad[0] << ": " << r.err;
    EXPECT_FALSE(r.err.empty()) << bad[0];
  }
  r = Cairn({"policy", coord, "--job=j", "--keep-best=2"});
  EXPECT_TRUE(Contains(r.err, "job j") && Contains(r.err, "--metric")) << r.err;
  EXPECT_EQ(Cairn({"policy", coord, "--keep-last=1"}).exit_code, 2);
  EXPECT_EQ(Cairn({"policy", coord, "--job=.x", "--keep-last=1"}).exit_code, 2);
  EXPECT_EQ(Cairn({"policy", "--job=j", "--keep-last=1"}).exit_code, 2);
  EXPECT_EQ(coordinator_.set_policies().size(), 4u);
  EXPECT_EQ(coordinator_.get_policies().size(), 2u);
  EXPECT_EQ(Cairn({"policy", "--help"}).exit_code, 0);

  // The coordinator cannot be reached: exit 1 naming it and the job.
  r = Cairn({"policy", "--coordinator=127.0.0.1:1", "--job=j", "--keep-last=1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1") && Contains(r.err, "job j")) << r.err;
}

TEST_F(FakeService, CliPinUnpin) {
  const std::string coord = "--coordinator=" + coordinator_address_;
  Commit("j", 100);
  RunResult r = Cairn({"pin", coord, "--job=j", "--step=100"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "pinned j/100\n");
  r = Cairn({"unpin", coord, "--job=j", "--step=100"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "unpinned j/100\n");
  auto pins = coordinator_.pins();
  ASSERT_EQ(pins.size(), 2u);
  EXPECT_EQ(pins[0].job(), "j");
  EXPECT_EQ(pins[0].step(), 100);
  EXPECT_TRUE(pins[0].pinned());
  EXPECT_EQ(pins[1].step(), 100);
  EXPECT_FALSE(pins[1].pinned());
  auto list = client_->List("j");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_FALSE(list->at(0).pinned);

  // No such checkpoint: exit 1 naming job and step.
  r = Cairn({"pin", coord, "--job=j", "--step=9"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "j/9")) << r.err;
  r = Cairn({"unpin", coord, "--job=j", "--step=9"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "unpinning j/9")) << r.err;
  const size_t sent = coordinator_.pins().size();

  for (const std::string command : {"pin", "unpin"}) {
    EXPECT_EQ(Cairn({command, coord, "--job=j"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--job=j", "--step=-1"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--job=j", "--step=abc"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--step=1"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--job=a/b", "--step=1"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, "--job=j", "--step=1"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--job=j", "--step=1", "extra"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--job=j", "--step=1", "--dry-run"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, "--help"}).exit_code, 0);
  }
  EXPECT_EQ(coordinator_.pins().size(), sent);
  r = Cairn({"pin", "--coordinator=127.0.0.1:1", "--job=j", "--step=1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1") && Contains(r.err, "j/1")) << r.err;
}

TEST_F(FakeService, CliGcTextAndJson) {
  const std::string coord = "--coordinator=" + coordinator_address_;
  v1::GcResponse canned;
  AddDecision(&canned, 200, true, {"newest"}, "kept by newest");
  AddDecision(&canned, 50, false, {}, "no rule keeps it (policy: keep-last=1)");
  AddDecision(&canned, 100, true, {"keep-last", "pinned"}, "kept by keep-last, pinned");
  canned.set_deleted(1);
  coordinator_.set_gc_response(canned);

  RunResult r = Cairn({"gc", coord, "--job=j"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "STEP  ACTION  WHY\n"
            "  50  delete  no rule keeps it (policy: keep-last=1)\n"
            " 100  keep    kept by keep-last, pinned\n"
            " 200  keep    kept by newest\n"
            "job j: deleted 1 of 3 checkpoints, kept 2\n");
  r = Cairn({"gc", coord, "--job=j", "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "STEP  ACTION        WHY\n"
            "  50  would delete  no rule keeps it (policy: keep-last=1)\n"
            " 100  keep          kept by keep-last, pinned\n"
            " 200  keep          kept by newest\n"
            "job j (dry run): would delete 1 of 3 checkpoints, keep 2\n");
  auto gcs = coordinator_.gcs();
  ASSERT_EQ(gcs.size(), 2u);
  EXPECT_EQ(gcs[0].job(), "j");
  EXPECT_FALSE(gcs[0].dry_run());
  EXPECT_TRUE(gcs[1].dry_run());

  r = Cairn({"gc", coord, "--job=j", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json.size(), 4u);
  EXPECT_EQ(json["job"], "j");
  EXPECT_EQ(json["dry_run"], false);
  EXPECT_EQ(json["deleted"], 1);
  ASSERT_EQ(json["decisions"].size(), 3u);
  EXPECT_EQ(json["decisions"][0], nlohmann::json({{"step", 50},
                                                  {"keep", false},
                                                  {"kept_by", nlohmann::json::array()},
                                                  {"reason", "no rule keeps it (policy: keep-last=1)"}}));
  EXPECT_EQ(json["decisions"][1], nlohmann::json({{"step", 100},
                                                  {"keep", true},
                                                  {"kept_by", {"keep-last", "pinned"}},
                                                  {"reason", "kept by keep-last, pinned"}}));
  EXPECT_EQ(json["decisions"][2]["step"], 200);
  // A dry run's "deleted" counts what would be deleted.
  r = Cairn({"gc", coord, "--job=j", "--dry-run", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json["dry_run"], true);
  EXPECT_EQ(json["deleted"], 1);
  EXPECT_EQ(json["decisions"].size(), 3u);
  EXPECT_EQ(coordinator_.gcs().size(), 4u);

  // A job without checkpoints.
  coordinator_.set_gc_response({});
  r = Cairn({"gc", coord, "--job=empty"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "job empty: deleted 0 of 0 checkpoints, kept 0\n");
  r = Cairn({"gc", coord, "--job=empty", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["decisions"], nlohmann::json::array());

  EXPECT_EQ(Cairn({"gc", coord}).exit_code, 2);
  EXPECT_EQ(Cairn({"gc", "--job=j"}).exit_code, 2);
  EXPECT_EQ(Cairn({"gc", coord, "--job=j j"}).exit_code, 2);
  EXPECT_EQ(Cairn({"gc", coord, "--job=j", "extra"}).exit_code, 2);
  EXPECT_EQ(Cairn({"gc", coord, "--job=j", "--step=1"}).exit_code, 2);
  EXPECT_EQ(Cairn({"gc", "--help"}).exit_code, 0);
  EXPECT_EQ(coordinator_.gcs().size(), 6u);
  r = Cairn({"gc", "--coordinator=127.0.0.1:1", "--job=j", "--dry-run"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1") && Contains(r.err, "job j")) << r.err;

  RunResult help = Cairn({"--help"});
  EXPECT_TRUE(Contains(help.out, "policy") && Contains(help.out, "pin") &&
              Contains(help.out, "unpin") && Contains(help.out, "gc"))
      << help.out;
}

}  // namespace
}  // namespace client_test
}  // namespace cairn
