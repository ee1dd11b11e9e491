// The catalog store on etcd (v3 API over gRPC, a client generated from
// etcd's own schemas: proto/etcd/). One coordinator leads: it holds the key
// PREFIX/leader, attached to an etcd lease it keeps alive; every write is a
// transaction that succeeds only while that key still has the revision this
// process created it with (fencing). Losing the lease (a partition longer
// than the TTL, a pause) ends the leadership for good: the store refuses
// every later write and tells the coordinator, which stops.
#include <grpcpp/grpcpp.h>


#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "coordinator/internal/kv_store.h"
#include "proto/rpc/rpc_util.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "observability/log.h"

namespace cairn {
namespace internal {
namespace {

namespace pb = ::etcdserverpb;
using Clock = std::chrono::steady_clock;
// gRPC deadlines are wall-clock time points.
using WallClock = std::chrono::system_clock;

constexpr int64_t kScanPage = 1000;

// An etcd call's failure as the catalog reports it: unreachable or slow
// (DEADLINE_EXCEEDED too) is Unavailable, which callers retry or fail over
// on; what etcd refuses keeps its code; anything else is Internal. (Not
// rpc::FromGrpc, which keeps every code for Cairn's own servers.)
absl::Status EtcdError(const grpc::Status& s, absl::string_view what) {
  const std::string msg = absl::StrCat("etcd ", what, ": ", s.error_message());
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::UnavailableError(msg);
    case grpc::StatusCode::INVALID_ARGUMENT:
      return absl::InvalidArgumentError(msg);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

class EtcdStore : public KvStore {
 public:
  EtcdStore(EtcdStoreOptions options, std::shared_ptr<grpc::Channel> channel)
      : options_(std::move(options)),
        kv_(pb::KV::NewStub(channel)),
        lease_(pb::Lease::NewStub(channel)),
        leader_key_(absl::StrCat(options_.prefix, "/leader")) {}

  ~EtcdStore() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (keepalive_.joinable()) keepalive_.join();
    // Hand over at once instead of after the TTL (best effort).
    if (lease_id_.load() != 0 && !lost_.load()) {
      pb::LeaseRevokeRequest req;
      req.set_id(lease_id_.load());
      pb::LeaseRevokeResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(WallClock::now() + std::chrono::seconds(2));
      (void)lease_->LeaseRevoke(&ctx, req, &resp);
    }
  }

  // A new lease for this process's candidacy.
  absl::Status GrantLease() {
    pb::LeaseGrantRequest grant;
    grant.set_ttl(options_.lease_ttl_seconds);
    pb::LeaseGrantResponse granted;
    absl::Status s = Call("lease grant", [&](grpc::ClientContext* ctx) {
      return lease_->LeaseGrant(ctx, grant, &granted);
    });
    if (!s.ok()) return s;
    if (!granted.error().empty()) {
      return absl::InternalError(absl::StrCat("etcd lease grant: ", granted.error()));
    }
    std::lock_guard<std::mutex> lock(mu_);
    lease_id_.store(granted.id());
    last_renewal_ = Clock::now();
    standby_lease_gone_ = false;
    return absl::OkStatus();
  }

  // Grants the lease, starts renewing it, and waits until this process
  // holds the leader key. A standby rides out etcd being unreachable (and
  // takes a new lease if its own expired meanwhile); only a first lease
  // that cannot be granted fails the start.
  absl::Status Campaign() {
    absl::Status s = GrantLease();
    if (!s.ok()) return s;
    keepalive_ = std::thread([this] { KeepAlive(); });

    std::string last_seen = "\x01";  // not a name: report the first state
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (stop_) return absl::CancelledError("closed while campaigning");
      }
      if (standby_lease_gone_.load()) {
        if (absl::Status g = GrantLease(); !g.ok()) {
          logging::Log(absl::StrCat("standby: ", g.message(), "; retrying"));
          std::this_thread::sleep_for(std::chrono::milliseconds(500));
          continue;
        }
      }
      pb::TxnRequest txn;
      pb::Compare* absent = txn.add_compare();
      absent->set_key(leader_key_);
      absent->set_target(pb::Compare::CREATE);
      absent->set_result(pb::Compare::EQUAL);
      absent->set_create_revision(0);
      pb::PutRequest* put = txn.add_success()->mutable_request_put();
      put->set_key(leader_key_);
      put->set_value(options_.candidate);
      put->set_lease(lease_id_.load());
      txn.add_failure()->mutable_request_range()->set_key(leader_key_);
      pb::TxnResponse resp;
      s = Call("campaign", [&](grpc::ClientContext* ctx) { return kv_->Txn(ctx, txn, &resp); });
      if (!s.ok() && !absl::IsUnavailable(s)) return s;
      if (s.ok() && resp.succeeded()) {
        leader_revision_ = resp.header().revision();
        leading_.store(true);
        return absl::OkStatus();
      }
      if (!s.ok()) {
        logging::Log(absl::StrCat("standby: ", s.message(), "; retrying"));
        continue;
      }
      std::string current;
      if (resp.responses_size() > 0 && resp.responses(0).response_range().kvs_size() > 0) {
        current = resp.responses(0).response_range().kvs(0).value();
      }
      if (current != last_seen && options_.on_standby) options_.on_standby(current);
      last_seen = current;
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_; });
      if (stop_) return absl::CancelledError("closed while campaigning");
    }
  }

  absl::StatusOr<std::optional<std::string>> Get(const std::string& key) override {
    pb::RangeRequest req;
    req.set_key(Key(key));
    pb::RangeResponse resp;
    absl::Status s = Call("get", [&](grpc::ClientContext* ctx) { return kv_->Range(ctx, req, &resp); });
    if (!s.ok()) return s;
    if (resp.kvs_size() == 0) return std::optional<std::string>();
    return std::optional<std::string>(resp.kvs(0).value());
  }

  absl::Status Write(const std::vector<KvWrite>& batch) override {
    if (batch.empty()) return absl::OkStatus();
    if (batch.size() > kMaxBatch) {
      return absl::InvalidArgumentError(
          absl::StrCat("catalog write of ", batch.size(), " changes; at most ", kMaxBatch));
    }
    pb::TxnRequest txn;
    for (const KvWrite& w : batch) {
      switch (w.op) {
        case KvWrite::Op::kPut: {
          pb::PutRequest* put = txn.add_success()->mutable_request_put();
          put->set_key(Key(w.key));
          put->set_value(w.value);
          break;
        }
        case KvWrite::Op::kDelete:
          txn.add_success()->mutable_request_delete_range()->set_key(Key(w.key));
          break;
        case KvWrite::Op::kDeletePrefix: {
          pb::DeleteRangeRequest* del = txn.add_success()->mutable_request_delete_range();
          del->set_key(Key(w.key));
          del->set_range_end(PrefixEnd(Key(w.key)));
          break;
        }
      }
    }
    return Fenced(absl::StrCat("write ", batch.front().key, batch.size() > 1 ? " (batch)" : ""),
                  &txn);
  }

  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Scan(
      const std::string& prefix) override {
    std::vector<std::pair<std::string, std::string>> out;
    const std::string full = Key(prefix);
    std::string from = full;
    const std::string end = PrefixEnd(full);
    int64_t revision = 0;  // one consistent snapshot across pages
    while (true) {
      pb::RangeRequest req;
      req.set_key(from);
      req.set_range_end(end);
      req.set_limit(kScanPage);
      req.set_sort_order(pb::RangeRequest::ASCEND);
      req.set_sort_target(pb::RangeRequest::KEY);
      req.set_revision(revision);
      pb::RangeResponse resp;
      absl::Status s = Call("scan", [&](grpc::ClientContext* ctx) { return kv_->Range(ctx, req, &resp); });
      if (!s.ok()) return s;
      if (revision == 0) revision = resp.header().revision();
      for (const auto& kv : resp.kvs()) {
        out.emplace_back(kv.key().substr(options_.prefix.size() + 1), kv.value());
      }
      if (!resp.more() || resp.kvs_size() == 0) return out;
      from = resp.kvs(resp.kvs_size() - 1).key() + std::string(1, '\0');
    }
  }

  std::string Describe() const override {
    return absl::StrCat("etcd://", absl::StrJoin(options_.endpoints, ","), "/", options_.prefix);
  }

 private:
  // Retries an unavailable member until call_timeout_ms has passed; each
  // attempt waits for a connection (wait_for_ready).
  template <typename Fn>
  absl::Status Call(absl::string_view what, Fn fn) {
    const auto deadline = WallClock::now() + std::chrono::milliseconds(options_.call_timeout_ms);
    while (true) {
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline);
      ctx.set_wait_for_ready(true);
      grpc::Status s = fn(&ctx);
      if (s.ok()) return absl::OkStatus();
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE || WallClock::now() >= deadline) {
        return EtcdError(s, what);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  // Runs `txn` only if this process still leads.
  absl::Status Fenced(const std::string& what, pb::TxnRequest* txn) {
    if (lost_.load()) return LostError();
    pb::Compare* mine = txn->add_compare();
    mine->set_key(leader_key_);
    mine->set_target(pb::Compare::CREATE);
    mine->set_result(pb::Compare::EQUAL);
    mine->set_create_revision(leader_revision_);
    pb::TxnResponse resp;
    absl::Status s = Call(what, [&](grpc::ClientContext* ctx) { return kv_->Txn(ctx, *txn, &resp); });
    if (!s.ok()) return s;
    if (!resp.succeeded()) {
      Lose(absl::FailedPreconditionError(
          absl::StrCat("etcd ", what, ": this coordinator no longer holds ", leader_key_)));
      return LostError();
    }
    return absl::OkStatus();
  }

  absl::Status LostError() const {
    return absl::FailedPreconditionError(absl::StrCat(
        "this coordinator lost the leadership of ", Describe(), "; another one leads now"));
  }

  void Lose(const absl::Status& why) {
    if (lost_.exchange(true)) return;
    logging::Log(absl::StrCat("leadership lost: ", why.message()));
    if (options_.on_lost_leadership) options_.on_lost_leadership(why);
  }

  // Renews the lease every TTL/3, and after a failed renewal again at once
  // (another etcd member may answer). A lease not renewed for a whole TTL
  // may have expired (etcd decides): leadership is then lost.
  void KeepAlive() {
    const auto period = std::chrono::milliseconds(options_.lease_ttl_seconds * 1000 / 3);
    std::unique_lock<std::mutex> lock(mu_);
    bool failed = false;
    while (!stop_ && !lost_.load()) {
      cv_.wait_for(lock, failed ? std::chrono::milliseconds(100) : period, [this] { return stop_; });
      if (stop_) return;
      lock.unlock();
      const absl::Status renewed = RenewOnce();
      lock.lock();
      failed = !renewed.ok();
      if (renewed.ok()) {
        last_renewal_ = Clock::now();
      } else if (absl::IsNotFound(renewed) ||
                 Clock::now() - last_renewal_ >= std::chrono::seconds(options_.lease_ttl_seconds)) {
        if (!leading_.load()) {
          // A standby's lease: the campaign takes a new one.
          standby_lease_gone_ = true;
          continue;
        }
        lock.unlock();
        Lose(renewed);
        return;
      }
    }
  }

  absl::Status RenewOnce() {
    grpc::ClientContext ctx;
    ctx.set_deadline(WallClock::now() + std::chrono::milliseconds(options_.lease_ttl_seconds * 1000 / 4));
    ctx.set_wait_for_ready(true);  // a member reconnecting is not a failure
    auto stream = lease_->LeaseKeepAlive(&ctx);
    pb::LeaseKeepAliveRequest req;
    req.set_id(lease_id_.load());
    pb::LeaseKeepAliveResponse resp;
    if (!stream->Write(req) || !stream->Read(&resp)) {
      stream->WritesDone();
      return EtcdError(stream->Finish(), "lease keepalive");
    }
    stream->WritesDone();
    ctx.TryCancel();
    (void)stream->Finish();
    if (resp.ttl() <= 0) return absl::NotFoundError("etcd lease expired");
    return absl::OkStatus();
  }

  std::string Key(const std::string& key) const { return absl::StrCat(options_.prefix, "/", key); }

  const EtcdStoreOptions options_;
  std::unique_ptr<pb::KV::Stub> kv_;
  std::unique_ptr<pb::Lease::Stub> lease_;
  const std::string leader_key_;
  std::atomic<int64_t> lease_id_{0};
  std::atomic<bool> leading_{false};
  std::atomic<bool> standby_lease_gone_{false};
  int64_t leader_revision_ = 0;  // create revision of our leader key
  std::atomic<bool> lost_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;            // GUARDED_BY(mu_)
  Clock::time_point last_renewal_;  // GUARDED_BY(mu_) once the thread runs
  std::thread keepalive_;
};

}  // namespace

absl::StatusOr<EtcdStoreOptions> ParseEtcdUri(const std::string& uri) {
  absl::string_view rest = uri;
  if (!absl::ConsumePrefix(&rest, "etcd://")) {
    return absl::InvalidArgumentError(absl::StrCat("catalog \"", uri, "\": expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX"));
  }
  const size_t slash = rest.find('/');
  if (slash == absl::string_view::npos || slash + 1 == rest.size()) {
    return absl::InvalidArgumentError(absl::StrCat("catalog \"", uri, "\": no /PREFIX after the endpoints"));
  }
  EtcdStoreOptions options;
  for (absl::string_view e : absl::StrSplit(rest.substr(0, slash), ',')) {
    const size_t colon = e.rfind(':');
    if (e.empty() || colon == absl::string_view::npos || colon + 1 == e.size()) {
      return absl::InvalidArgumentError(absl::StrCat("catalog \"", uri, "\": endpoint \"", e, "\" is not HOST:PORT"));
    }
    options.endpoints.emplace_back(e);
  }
  options.prefix = std::string(rest.substr(slash + 1));
  while (!options.prefix.empty() && options.prefix.back() == '/') options.prefix.pop_back();
  if (options.prefix.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("catalog \"", uri, "\": empty PREFIX"));
  }
  return options;
}

absl::StatusOr<std::unique_ptr<KvStore>> OpenEtcdStore(const EtcdStoreOptions& options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("no etcd endpoints");
  if (options.lease_ttl_seconds < 2) {
    return absl::InvalidArgumentError("the etcd lease TTL must be at least 2 seconds");
  }
  // One target for all members: gRPC then fails over between them.
  auto target = rpc::ListTarget(options.endpoints);
  if (!target.ok()) return target.status();
  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetMaxReceiveMessageSize(256 << 20);
  // A restarted member is used again within seconds (gRPC's default backoff
  // grows to two minutes).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  auto channel = grpc::CreateCustomChannel(*target, grpc::InsecureChannelCredentials(), args);
  auto store = std::make_unique<EtcdStore>(options, std::move(channel));
  absl::Status s = store->Campaign();
  if (!s.ok()) return s;
  return std::unique_ptr<KvStore>(std::move(store));
}

}  // namespace internal
}  // namespace cairn
