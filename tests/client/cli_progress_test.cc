// `cairn convert | verify | restore --from` run as real processes, once with
// stderr on a pseudo-terminal (where the progress bar is drawn) and once
// with stderr on a pipe (where it must not be, and the output is what it
// always was). Save and restore through a real cluster are in
// tests/service/service_test.cc.

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "storage/bundle/safetensors.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::BinPath;
using testing::RunResult;

constexpr int kTerminalColumns = 100;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// `cairn ARGS` with stderr on a terminal of kTerminalColumns columns.
RunResult CairnOnTerminal(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("cairn"));
  return testing::RunWithStderrOnTerminal(args, kTerminalColumns);
}

RunResult CairnPiped(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("cairn"));
  return testing::Run(args);
}

// The progress bar lines in `err`: the texts between '\r's, without the
// padding that covers longer earlier lines.
std::vector<std::string> BarLines(const std::string& err) {
  std::vector<std::string> lines;
  for (absl::string_view part : absl::StrSplit(err, '\r')) {
    std::string line(part.substr(0, part.find('\n')));
    line.erase(line.find_last_not_of(' ') + 1);
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

// Checks that `err` holds a drawn bar labelled `label` that ends at 100% of
// `total` (e.g. "12.0 MiB") with a rate, after at least one line with an
// ETA, every line fitting the terminal, the last one ended by a newline.
void ExpectBar(const std::string& err, const std::string& label, const std::string& total) {
  SCOPED_TRACE(err);
  ASSERT_TRUE(Contains(err, "\r")) << "no bar drawn";
  const std::vector<std::string> lines = BarLines(err);
  ASSERT_GE(lines.size(), 2u);
  bool eta = false;
  for (const std::string& line : lines) {
    if (line.rfind(label + " [", 0) != 0) continue;
    EXPECT_LT(line.size(), static_cast<size_t>(kTerminalColumns)) << line;
    EXPECT_TRUE(Contains(line, "/ ") && Contains(line, " " + total)) << line;
    EXPECT_TRUE(Contains(line, "B/s")) << line;
    eta = eta || Contains(line, "ETA ");
  }
  EXPECT_TRUE(eta) << "no line with an ETA";
  const size_t last = err.rfind('\r');
  const std::string final_line = err.substr(last + 1);
  EXPECT_EQ(final_line.rfind(label + " [", 0), 0u) << final_line;
  EXPECT_TRUE(Contains(final_line, "] 100%")) << final_line;
  EXPECT_TRUE(Contains(final_line, " in ")) << final_line;
  EXPECT_EQ(final_line.back(), '\n') << "the bar's last line must end with a newline";
}

class CliProgress : public ::testing::Test {
 protected:
  void SetUp() override {
    // 12 MiB in "big" (more than one 8 MiB copy), a small tensor, and
    // metadata a bundle cannot keep (a warning while converting).
    big_ = testing::PatternBytes(12 << 20, 7);
    bias_ = testing::PatternBytes(64, 8);
    std::vector<SafetensorsTensor> infos = {
        {"big", DataType::kUint8, {static_cast<int64_t>(big_.size())}},
        {"bias", DataType::kFloat, {16}}};
    auto prefix = BuildSafetensorsPrefix(&infos, {{"note", "hi"}});
    ASSERT_TRUE(prefix.ok()) << prefix.status();
    std::map<std::string, std::string> data = {{"big", big_}, {"bias", bias_}};
    std::string bytes = *prefix;
    for (const auto& info : infos) bytes += data[info.name];
    src_ = dir_.Join("in.safetensors");
    testing::WriteFile(src_, bytes);
  }

  testing::TempDir dir_;
  std::string big_, bias_, src_;
};

constexpr char kNoteWarning[] =
    "cairn: warning: metadata \"note\" is not kept: bundles have no place for it\n";

TEST_F(CliProgress, ConvertDrawsOnATerminalOnlyAndWritesTheSameFiles) {
  const std::string piped_prefix = dir_.Join("piped/variables");
  RunResult piped = CairnPiped({"convert", src_, piped_prefix});
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out, "converted " + src_ + " to " + piped_prefix + "\n");
  EXPECT_EQ(piped.err, kNoteWarning) << "piped: exactly the warning, no bar";

  const std::string tty_prefix = dir_.Join("tty/variables");
  RunResult tty = CairnOnTerminal({"convert", src_, tty_prefix});
  ASSERT_EQ(tty.exit_code, 0) << tty.err;
  EXPECT_EQ(tty.out, "converted " + src_ + " to " + tty_prefix + "\n");
  ExpectBar(tty.err, "convert", "12.0 MiB");
  EXPECT_EQ(tty.err.rfind(kNoteWarning, 0), 0u) << "the warning still reads whole: " << tty.err;
  EXPECT_EQ(testing::ReadFile(tty_prefix + ".index"), testing::ReadFile(piped_prefix + ".index"));
  EXPECT_EQ(testing::ReadFile(tty_prefix + ".data-00000-of-00001"),
            testing::ReadFile(piped_prefix + ".data-00000-of-00001"));

  // And back to safetensors, the other direction's progress.
  const std::string back = dir_.Join("back.safetensors");
  tty = CairnOnTerminal({"convert", tty_prefix, back});
  ASSERT_EQ(tty.exit_code, 0) << tty.err;
  ExpectBar(tty.err, "convert", "12.0 MiB");
  auto tensors = testing::ReadSafetensorsTensors(back);
  EXPECT_TRUE(tensors["big"] == big_);
  EXPECT_EQ(tensors["bias"], bias_);

  // --progress=never on a terminal: nothing but the warning.
  tty = CairnOnTerminal({"convert", src_, dir_.Join("never/variables"), "--progress=never"});
  ASSERT_EQ(tty.exit_code, 0) << tty.err;
  EXPECT_EQ(tty.err, kNoteWarning);
  // --progress=always on a pipe: the bar, without a terminal.
  piped = CairnPiped({"convert", src_, dir_.Join("always/variables"), "--progress=always"});
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_TRUE(Contains(piped.err, "\rconvert [")) << piped.err;
  EXPECT_TRUE(Contains(piped.err, "] 100%")) << piped.err;
}

TEST_F(CliProgress, VerifyDrawsOnATerminalOnlyWithTheSameResult) {
  const std::string prefix = dir_.Join("ckpt/variables");
  ASSERT_EQ(CairnPiped({"convert", src_, prefix}).exit_code, 0);
  RunResult piped = CairnPiped({"verify", prefix});
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out,
            absl::StrCat(prefix, ": OK, 2 tensors, ", big_.size() + bias_.size(), " bytes verified\n"));
  EXPECT_EQ(piped.err, "") << "piped: no progress output at all";

  RunResult tty = CairnOnTerminal({"verify", prefix});
  ASSERT_EQ(tty.exit_code, 0) << tty.err;
  EXPECT_EQ(tty.out, piped.out) << "stdout is the same with a bar";
  ExpectBar(tty.err, "verify", "12.0 MiB");

  tty = CairnOnTerminal({"verify", prefix, "--progress=never"});
  ASSERT_EQ(tty.exit_code, 0) << tty.err;
  EXPECT_EQ(tty.err, "");
  tty = CairnOnTerminal({"verify", prefix, "--progress=auto"});
  EXPECT_TRUE(Contains(tty.err, "\rverify [")) << tty.err;

  // Usage: a bad mode is a usage error, and --help documents the flag.
  RunResult bad = CairnPiped({"verify", prefix, "--progress=sometimes"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_TRUE(Contains(bad.err, "--progress=sometimes")) << bad.err;
  for (const char* command : {"verify", "convert", "save", "restore"}) {
    RunResult help = CairnPiped({command, "--help"});
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_TRUE(Contains(help.out, "--progress=auto|always|never")) << command << ": " << help.out;
  }
  EXPECT_TRUE(Contains(CairnPiped({"--help"}).out, "--progress=auto|always|never"));
}

TEST_F(CliProgress, RestoreFromAPrefixDrawsAndAFailureClearsTheBar) {
  const std::string prefix = dir_.Join("ckpt/variables");
  ASSERT_EQ(CairnPiped({"convert", src_, prefix}).exit_code, 0);
  const std::string out_piped = dir_.Join("piped.safetensors");
  RunResult piped = CairnPiped({"restore", "--from=" + prefix, "--to=" + out_piped});
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.err, "");
  EXPECT_TRUE(Contains(piped.out, "restored 2 tensors (12.0 MiB)")) << piped.out;

  const std::string out_tty = dir_.Join("tty.safetensors");
  RunResult tty = CairnOnTerminal({"restore", "--from=" + prefix, "--to=" + out_tty});
  ASSERT_EQ(tty.exit_code, 0) << tty.err;
  ExpectBar(tty.err, "restore", "12.0 MiB");
  // The same line but for the destination's name.
  EXPECT_EQ(tty.out.substr(0, tty.out.find(" to ")), piped.out.substr(0, piped.out.find(" to ")));
  EXPECT_EQ(testing::ReadFile(out_tty), testing::ReadFile(out_piped));

  // A corrupt tensor: the bar is erased and the error starts a clean line.
  const std::string data_file = prefix + ".data-00000-of-00001";
  std::string data = testing::ReadFile(data_file);
  data[data.size() / 2] ^= 0x40;
  testing::WriteFile(data_file, data);
  tty = CairnOnTerminal({"restore", "--from=" + prefix, "--to=" + dir_.Join("bad.safetensors")});
  EXPECT_EQ(tty.exit_code, 1) << tty.err;
  EXPECT_TRUE(Contains(tty.err, "\rrestore [")) << tty.err;
  const std::string after = tty.err.substr(tty.err.rfind('\r') + 1);
  EXPECT_EQ(after.rfind("cairn: ", 0), 0u) << "the error follows an erased line: " << tty.err;
  EXPECT_TRUE(Contains(after, "\"big\"")) << after;
  // The line before the error was blanked: '\r', spaces, '\r'.
  const size_t blank_end = tty.err.rfind('\r');
  const size_t blank_start = tty.err.rfind('\r', blank_end - 1);
  const std::string blank = tty.err.substr(blank_start + 1, blank_end - blank_start - 1);
  EXPECT_FALSE(blank.empty());
  EXPECT_EQ(blank.find_first_not_of(' '), std::string::npos) << "\"" << blank << "\"";
  // The same failure piped reads exactly as before: one line.
  piped = CairnPiped({"restore", "--from=" + prefix, "--to=" + dir_.Join("bad2.safetensors")});
  EXPECT_EQ(piped.exit_code, 1);
  EXPECT_EQ(piped.err, after);
}

}  // namespace
}  // namespace cairn
