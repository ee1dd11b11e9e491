// `cairn save`, `list` and `restore --coordinator` as real processes
// against the fake services, and their usage errors.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "storage/bundle/safetensors.h"
#include "tests/client/client_fixture.h"
#include "tests/client/fake_service.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace client_test {
namespace {

using testing::RunResult;

// `cairn save`, `list` and `restore --coordinator` against the fakes.
TEST_F(FakeService, CliSaveListRestore) {
  testing::TempDir dir;
  const std::string emb = Floats(4 * 3, 1);
  const std::string bias = Floats(3, 50);
  const std::string src = dir.Join("mine.safetensors");
  WriteSafetensors(src, {{"emb", DataType::kFloat, {4, 3}}, {"bias", DataType::kFloat, {3}}},
                   {{"emb", emb}, {"bias", bias}},
                   {{"cairn.slice.emb", "8 3 4,4:-"}, {"note", "hi"}});
  RunResult save = Cairn({"save", "--coordinator=" + coordinator_address_, "--job=cli", "--step=7",
                          "--from=" + src, "--metric=loss=0.125", "--metric=acc=1"});
  ASSERT_EQ(save.exit_code, 0) << save.err;
  EXPECT_TRUE(Contains(save.out, "saved shard 0/1 of cli/step 7: 2 tensors")) << save.out;
  EXPECT_TRUE(Contains(save.out, "checkpoint cli/7 committed")) << save.out;
  EXPECT_TRUE(Contains(save.err, "\"note\"")) << save.err;  // metadata not kept
  auto begins = coordinator_.begins();
  ASSERT_EQ(begins.size(), 1u);
  EXPECT_EQ(begins[0].metrics().at("loss"), 0.125);
  auto received = writer_->tensors();
  ASSERT_EQ(received.size(), 1u);
  for (const auto& t : received[0]) {
    if (t.header.name() == "emb") {
      EXPECT_EQ(t.header.slice(), "4,4:-");
      EXPECT_EQ(t.header.shape_size(), 2);
      EXPECT_EQ(t.header.shape(0), 8);
      EXPECT_EQ(t.data, emb);
    } else {
      EXPECT_EQ(t.data, bias);
    }
  }

  // Shard 1 of 3 is not the last: durable, not committed.
  save = Cairn({"save", "--coordinator=" + coordinator_address_, "--job=cli", "--step=8",
                "--from=" + src, "--shard=1/3"});
  ASSERT_EQ(save.exit_code, 0) << save.err;
  EXPECT_TRUE(Contains(save.out, "saved shard 1/3 of cli/step 8")) << save.out;
  EXPECT_FALSE(Contains(save.out, "committed")) << save.out;
  EXPECT_EQ(coordinator_.begins().back().shard_index(), 1);
  EXPECT_EQ(coordinator_.begins().back().num_shards(), 3);

  Commit("cli", 7);
  RunResult list = Cairn({"list", "--coordinator=" + coordinator_address_, "--job=cli", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto json = nlohmann::json::parse(list.out);
  EXPECT_EQ(json["job"], "cli");
  ASSERT_EQ(json["checkpoints"].size(), 1u);
  const auto& c = json["checkpoints"][0];
  EXPECT_EQ(c["step"], 7);
  EXPECT_EQ(c["committed_at"], "2023-11-14T22:13:20.123463Z");
  EXPECT_EQ(c["bytes"], 3 * 1024 * 1024 + 300 * 1024);
  EXPECT_EQ(c["num_shards"], 1);
  EXPECT_EQ(c["metrics"]["loss"], 0.25);
  EXPECT_EQ(c["pinned"], false);
  EXPECT_EQ(c["kept_by"], nlohmann::json({"keep-last"}));
  EXPECT_TRUE(Contains(std::string(c["prefix"]), "cli/ckpt-7/variables"));
  EXPECT_EQ(c.size(), 8u);
  list = Cairn({"list", "--coordinator=" + coordinator_address_, "--job=cli"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(Contains(list.out, "2023-11-14T22:13:20Z")) << list.out;
  EXPECT_TRUE(Contains(list.out, "3.3 MiB")) << list.out;
  EXPECT_TRUE(Contains(list.out, "loss=0.25")) << list.out;
  EXPECT_TRUE(Contains(list.out, "keep-last")) << list.out;
  // A job the coordinator does not know is an error, not an empty list.
  list = Cairn({"list", "--coordinator=" + coordinator_address_, "--job=empty", "--json"});
  EXPECT_EQ(list.exit_code, 1);
  EXPECT_TRUE(Contains(list.err, "no job named empty")) << list.err;

  // Restore the newest step; emb (of which only rows 4-7 were saved) comes
  // back as that slice, marked.
  const std::string out = dir.Join("out.safetensors");
  RunResult restore = Cairn({"restore", "--coordinator=" + coordinator_address_, "--job=cli",
                             "--to=" + out, "--slice=emb=8 3 4,4:-"});
  ASSERT_EQ(restore.exit_code, 0) << restore.err;
  EXPECT_TRUE(Contains(restore.out, "cli/7")) << restore.out;
  SafetensorsHeader header;
  auto tensors = testing::ReadSafetensorsTensors(out, &header);
  EXPECT_EQ(tensors["bias"], bias);
  EXPECT_EQ(tensors["emb"], emb);
  EXPECT_EQ(header.metadata["cairn.slice.emb"], "8 3 4,4:-");
  restore = Cairn({"restore", "--coordinator=" + coordinator_address_, "--job=cli", "--step=9",
                   "--to=" + out});
  EXPECT_EQ(restore.exit_code, 1);
  EXPECT_TRUE(Contains(restore.err, "cli")) << restore.err;
}

TEST(CliSaveList, UsageErrors) {
  testing::TempDir dir;
  const std::string src = dir.Join("in.safetensors");
  WriteSafetensors(src, {{"w", DataType::kFloat, {2}}}, {{"w", Floats(2, 0)}}, {});
  const std::vector<std::string> base = {"save", "--coordinator=127.0.0.1:1", "--job=j",
                                         "--step=1", "--from=" + src};
  auto with = [&](std::vector<std::string> extra, size_t drop = SIZE_MAX) {
    std::vector<std::string> args;
    for (size_t i = 0; i < base.size(); ++i) {
      if (i != drop) args.push_back(base[i]);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return Cairn(args).exit_code;
  };
  for (size_t drop = 1; drop < base.size(); ++drop) EXPECT_EQ(with({}, drop), 2) << base[drop];
  EXPECT_EQ(with({"--shard=4/4"}), 2);
  EXPECT_EQ(with({"--shard=1"}), 2);
  EXPECT_EQ(with({"--shard=-1/4"}), 2);
  EXPECT_EQ(with({"--shard=0/0"}), 2);
  EXPECT_EQ(with({"--metric=loss"}), 2);
  EXPECT_EQ(with({"--metric==1"}), 2);
  EXPECT_EQ(with({"--metric=loss=abc"}), 2);
  EXPECT_EQ(with({"--metric=loss=1", "--metric=loss=2"}), 2);
  EXPECT_EQ(Cairn({"save", "--coordinator=a:1", "--job=a b", "--step=1", "--from=" + src}).exit_code,
            2);
  EXPECT_EQ(Cairn({"save", "--coordinator=a:1", "--job=j", "--step=-1", "--from=" + src}).exit_code,
            2);
  EXPECT_EQ(Cairn({"save", "--help"}).exit_code, 0);
  // Valid flags: fails (exit 1) at the unreachable coordinator, or at a bad file.
  RunResult r = Cairn(base);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1")) << r.err;
  r = Cairn({"save", "--coordinator=127.0.0.1:1", "--job=j", "--step=1",
             "--from=" + dir.Join("missing.safetensors")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "missing.safetensors")) << r.err;
  testing::WriteFile(dir.Join("bad.safetensors"), "short");
  r = Cairn({"save", "--coordinator=127.0.0.1:1", "--job=j", "--step=1",
             "--from=" + dir.Join("bad.safetensors")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "bad.safetensors")) << r.err;

  EXPECT_EQ(Cairn({"list", "--coordinator=127.0.0.1:1"}).exit_code, 2);
  EXPECT_EQ(Cairn({"list", "--job=j"}).exit_code, 2);
  EXPECT_EQ(Cairn({"list", "--coordinator=127.0.0.1:1", "--job=j", "extra"}).exit_code, 2);
  r = Cairn({"list", "--coordinator=127.0.0.1:1", "--job=j"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1")) << r.err;
  RunResult help = Cairn({"--help"});
  EXPECT_TRUE(Contains(help.out, "save") && Contains(help.out, "restore") &&
              Contains(help.out, "list"));
}

}  // namespace
}  // namespace client_test
}  // namespace cairn
