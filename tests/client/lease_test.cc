// Restores (the library's and `cairn restore --coordinator`) hold a lease on
// the checkpoint around the read, and handle the coordinator's refusals.
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/client/client_fixture.h"
#include "tests/client/fake_service.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace client_test {
namespace {

using testing::RunResult;

// Moves a checkpoint's directory out of the way and back, so that its files
// can be read only between a lease's acquisition and its release.
class LeaseGate {
 public:
  LeaseGate(const std::string& root, const std::string& job, int64_t step)
      : there_(absl::StrCat(root, "/", job, "/ckpt-", step)),
        away_(absl::StrCat(root, "/", job, "/away-", step)) {}
  void Hide() { Move(there_, away_); }
  void Show() { Move(away_, there_); }

 private:
  static void Move(const std::string& from, const std::string& to) {
    std::error_code ec;
    std::filesystem::rename(from, to, ec);
    if (ec) ADD_FAILURE() << "rename " << from << " -> " << to << ": " << ec.message();
  }
  const std::string there_, away_;
};

TEST_F(FakeService, RestoreHoldsALeaseAroundTheRead) {
  const std::string w = Floats(6, 3);
  ASSERT_TRUE(client_
                  ->SaveShard({"lease-job", 42, 0, 1, {}},
                              {{"w", DataType::kFloat, {2, 3}, std::nullopt, w, {}}})
                  .ok());
  Commit("lease-job", 7);
  Commit("lease-job", 42);
  // The files exist only while a lease is held: a read outside the lease fails.
  LeaseGate gate(root_.path(), "lease-job", 42);
  gate.Hide();
  coordinator_.set_lease_hooks([&gate] { gate.Show(); }, [&gate] { gate.Hide(); });
  coordinator_.clear_calls();
  auto restored = client_->Restore("lease-job", std::nullopt, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->at("w").tensor.data.view(), w);
  // The newest step is resolved first, then that step is leased.
  EXPECT_EQ(coordinator_.calls(),
            (std::vector<std::string>{"Get(latest)", "AcquireLease(42)", "ReleaseLease(lease-1)"}));
  auto acquires = coordinator_.acquires();
  ASSERT_EQ(acquires.size(), 1u);
  EXPECT_EQ(acquires[0].job(), "lease-job");
  EXPECT_EQ(acquires[0].step(), 42);
  EXPECT_EQ(acquires[0].ttl_ms(), 60 * 60 * 1000);

  // A failed read releases its lease too.
  RestoreRequest missing;
  missing.tensors = {"nope"};
  auto r = client_->Restore("lease-job", 42, missing);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_TRUE(Contains(r.status().message(), "\"nope\"")) << r.status();
  EXPECT_EQ(coordinator_.releases(), (std::vector<std::string>{"lease-1", "lease-2"}));

  // A failed release does not fail the restore: the lease expires by itself.
  coordinator_.set_release_error(GrpcError(grpc::StatusCode::INTERNAL, "catalog hiccup"));
  restored = client_->Restore("lease-job", 42, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(coordinator_.releases().size(), 3u);
  coordinator_.set_release_error(grpc::Status::OK);
  coordinator_.set_lease_hooks(nullptr, nullptr);  // the files stay where they are now

  // The checkpoint went between Get and AcquireLease: NotFound, nothing read
  // or released.
  coordinator_.set_acquire_error(
      GrpcError(grpc::StatusCode::NOT_FOUND, "checkpoint lease-job/42 was deleted by retention"));
  coordinator_.clear_calls();
  r = client_->Restore("lease-job", 42, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_TRUE(Contains(r.status().message(), "lease-job/42")) << r.status();
  EXPECT_TRUE(Contains(r.status().message(), coordinator_address_)) << r.status();
  EXPECT_EQ(coordinator_.calls(), (std::vector<std::string>{"Get(42)", "AcquireLease(42)"}));
  // Any other refusal fails the restore as well.
  coordinator_.set_acquire_error(
      GrpcError(grpc::StatusCode::FAILED_PRECONDITION, "checkpoint lease-job/42 is being deleted"));
  r = client_->Restore("lease-job", 42, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  // A coordinator that predates leases (and retention) answers UNIMPLEMENTED:
  // the restore goes ahead without a lease.
  coordinator_.set_acquire_error(GrpcError(grpc::StatusCode::UNIMPLEMENTED, ""));
  coordinator_.clear_calls();
  restored = client_->Restore("lease-job", 42, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(coordinator_.calls(), (std::vector<std::string>{"Get(42)", "AcquireLease(42)"}));
}

TEST_F(FakeService, CliRestoreHoldsALease) {
  testing::TempDir dir;
  const std::string w = Floats(4, 9);
  ASSERT_TRUE(client_
                  ->SaveShard({"lease-job", 42, 0, 1, {}},
                              {{"w", DataType::kFloat, {4}, std::nullopt, w, {}}})
                  .ok());
  Commit("lease-job", 42);
  LeaseGate gate(root_.path(), "lease-job", 42);
  gate.Hide();
  coordinator_.set_lease_hooks([&gate] { gate.Show(); }, [&gate] { gate.Hide(); });
  coordinator_.clear_calls();
  const std::string out = dir.Join("out.safetensors");
  RunResult r = Cairn({"restore", "--coordinator=" + coordinator_address_, "--job=lease-job",
                       "--to=" + out, "--slice=w=4 1,2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(testing::ReadSafetensorsTensors(out)["w"], w.substr(4, 8));
  EXPECT_EQ(coordinator_.calls(),
            (std::vector<std::string>{"Get(latest)", "AcquireLease(42)", "ReleaseLease(lease-1)"}));
  ASSERT_EQ(coordinator_.acquires().size(), 1u);
  EXPECT_EQ(coordinator_.acquires()[0].ttl_ms(), 60 * 60 * 1000);
  // A failed restore (bad --slice shape, found in the index) releases too.
  r = Cairn({"restore", "--coordinator=" + coordinator_address_, "--job=lease-job",
             "--to=" + out, "--slice=w=5 1,2"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(coordinator_.releases(), (std::vector<std::string>{"lease-1", "lease-2"}));
  // The checkpoint is gone by the time of the lease: exit 1 naming it.
  coordinator_.set_lease_hooks(nullptr, nullptr);
  coordinator_.set_acquire_error(GrpcError(grpc::StatusCode::NOT_FOUND, "deleted by retention"));
  r = Cairn({"restore", "--coordinator=" + coordinator_address_, "--job=lease-job", "--step=42",
             "--to=" + out});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "lease-job/42")) << r.err;
  EXPECT_EQ(coordinator_.releases().size(), 2u);
}

}  // namespace
}  // namespace client_test
}  // namespace cairn
