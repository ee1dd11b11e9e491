// The client library's retention calls (SetPolicy, GetPolicy, Pin, Gc,
// AcquireLease, ReleaseLease) map to the requests the coordinator gets.
#include <string>
#include <vector>

#include "client/client.h"
#include "gtest/gtest.h"
#include "proto/cairn.pb.h"
#include "tests/client/client_fixture.h"
#include "tests/client/fake_service.h"

namespace cairn {
namespace client_test {
namespace {

TEST_F(FakeService, RetentionCallsMapToRequests) {
  RetentionPolicy policy;
  policy.keep_last = 3;
  policy.keep_every_steps = 1000;
  policy.keep_every_hours = 0.5;
  policy.keep_best = 2;
  policy.metric = "loss";
  policy.maximize = true;
  ASSERT_TRUE(client_->SetPolicy("j", policy).ok());
  auto sets = coordinator_.set_policies();
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(sets[0].job(), "j");
  EXPECT_EQ(sets[0].policy().keep_last(), 3);
  EXPECT_EQ(sets[0].policy().keep_every_steps(), 1000);
  EXPECT_EQ(sets[0].policy().keep_every_hours(), 0.5);
  EXPECT_EQ(sets[0].policy().keep_best(), 2);
  EXPECT_EQ(sets[0].policy().metric(), "loss");
  EXPECT_TRUE(sets[0].policy().maximize());
  auto got = client_->GetPolicy("j");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->keep_last, 3);
  EXPECT_EQ(got->keep_every_steps, 1000);
  EXPECT_EQ(got->keep_every_hours, 0.5);
  EXPECT_EQ(got->keep_best, 2);
  EXPECT_EQ(got->metric, "loss");
  EXPECT_TRUE(got->maximize);
  auto none = client_->GetPolicy("other");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->keep_last + none->keep_every_steps + none->keep_best, 0);
  EXPECT_EQ(none->keep_every_hours, 0);
  EXPECT_TRUE(none->metric.empty());
  EXPECT_EQ(coordinator_.get_policies().size(), 2u);

  Commit("j", 100);
  ASSERT_TRUE(client_->Pin("j", 100, true).ok());
  ASSERT_TRUE(client_->Pin("j", 100, false).ok());
  auto pins = coordinator_.pins();
  ASSERT_EQ(pins.size(), 2u);
  EXPECT_EQ(pins[0].job(), "j");
  EXPECT_EQ(pins[0].step(), 100);
  EXPECT_TRUE(pins[0].pinned());
  EXPECT_FALSE(pins[1].pinned());
  absl::Status pin = client_->Pin("j", 9, true);
  EXPECT_EQ(pin.code(), absl::StatusCode::kNotFound) << pin;
  EXPECT_TRUE(Contains(pin.message(), "pinning j/9")) << pin;
  EXPECT_TRUE(Contains(pin.message(), "coordinator " + coordinator_address_)) << pin;

  // Gc: decisions come back ascending by step, whatever the wire order.
  v1::GcResponse canned;
  AddDecision(&canned, 200, true, {"newest"}, "kept by newest");
  AddDecision(&canned, 50, false, {}, "no rule keeps it");
  AddDecision(&canned, 100, true, {"keep-last", "pinned"}, "kept by keep-last, pinned");
  canned.set_deleted(1);
  coordinator_.set_gc_response(canned);
  auto gc = client_->Gc("j", false);
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_EQ(gc->deleted, 1);
  ASSERT_EQ(gc->decisions.size(), 3u);
  EXPECT_EQ(gc->decisions[0].step, 50);
  EXPECT_FALSE(gc->decisions[0].keep);
  EXPECT_TRUE(gc->decisions[0].kept_by.empty());
  EXPECT_EQ(gc->decisions[0].reason, "no rule keeps it");
  EXPECT_EQ(gc->decisions[1].step, 100);
  EXPECT_TRUE(gc->decisions[1].keep);
  EXPECT_EQ(gc->decisions[1].kept_by, (std::vector<std::string>{"keep-last", "pinned"}));
  EXPECT_EQ(gc->decisions[2].step, 200);
  gc = client_->Gc("j", true);
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_EQ(gc->deleted, 0);
  auto gcs = coordinator_.gcs();
  ASSERT_EQ(gcs.size(), 2u);
  EXPECT_EQ(gcs[0].job(), "j");
  EXPECT_FALSE(gcs[0].dry_run());
  EXPECT_TRUE(gcs[1].dry_run());

  auto lease = client_->AcquireLease("j", 100, 5000);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(*lease, "lease-1");
  EXPECT_EQ(coordinator_.acquires()[0].ttl_ms(), 5000);
  EXPECT_TRUE(client_->ReleaseLease(*lease).ok());
  EXPECT_EQ(coordinator_.releases(), std::vector<std::string>{"lease-1"});
  lease = client_->AcquireLease("j", 9, 5000);
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kNotFound) << lease.status();
  EXPECT_TRUE(Contains(lease.status().message(), "j/9")) << lease.status();
  // A coordinator without the call: UNIMPLEMENTED, said plainly.
  coordinator_.set_acquire_error(GrpcError(grpc::StatusCode::UNIMPLEMENTED, ""));
  lease = client_->AcquireLease("j", 100, 5000);
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kUnimplemented) << lease.status();
  EXPECT_TRUE(Contains(lease.status().message(), "leasing j/100: coordinator " +
                                                     coordinator_address_ +
                                                     ": does not support this call"))
      << lease.status();
}

}  // namespace
}  // namespace client_test
}  // namespace cairn
