// Security end to end, against real coordinator and writer processes:
// TLS and mutual TLS (certificates made at test time with the openssl
// command-line tool), the plaintext-beyond-loopback guard, and per-job
// authorization on every RPC of both services (driven through the
// generated stubs).
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "proto/rpc/auth.h"
#include "proto/cairn.grpc.pb.h"
#include "proto/rpc/rpc_util.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::BinPath;
using testing::Cluster;
using testing::RunResult;
using testing::ServerProcess;
using testing::TempDir;

RunResult Run(const std::vector<std::string>& argv) { return testing::Run(argv); }

RunResult Cairn(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("cairn"));
  return Run(args);
}

// ------------------------------------------------------------------ TLS

// A throwaway CA, a server certificate for 127.0.0.1 / localhost and a
// client certificate, shared by the TLS tests.
class Certs {
 public:
  static const Certs& Get() {
    static const Certs certs;  // its temp dir is removed at exit
    return certs;
  }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  std::string ca() const { return dir_.Join("ca.crt"); }
  std::string server_cert() const { return dir_.Join("server.crt"); }
  std::string server_key() const { return dir_.Join("server.key"); }
  std::string client_cert() const { return dir_.Join("client.crt"); }
  std::string client_key() const { return dir_.Join("client.key"); }
  // A CA nobody trusts, and a certificate it signed.
  std::string rogue_ca() const { return dir_.Join("rogue.crt"); }
  std::string rogue_client_cert() const { return dir_.Join("rogue-client.crt"); }
  std::string rogue_client_key() const { return dir_.Join("rogue-client.key"); }

  // The server flags: serve TLS, verify peers with the CA, present the
  // server certificate to other servers.
  std::vector<std::string> ServerFlags(bool mutual) const {
    std::vector<std::string> f = {"--tls-cert=" + server_cert(), "--tls-key=" + server_key(),
                                  "--tls-ca=" + ca()};
    if (mutual) f.push_back("--tls-client-auth");
    return f;
  }

 private:
  Certs() { ok_ = Make(); }

  bool Step(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"/usr/bin/openssl"};
    argv.insert(argv.end(), args.begin(), args.end());
    RunResult r = testing::Run(argv);
    if (r.exit_code != 0) error_ = absl::StrCat(args[0], ": ", r.err);
    return r.exit_code == 0;
  }

  bool Leaf(const std::string& name, const std::string& ca, const std::string& cn,
            const std::string& ext) {
    testing::WriteFile(dir_.Join(name + ".ext"), ext);
    return Step({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", dir_.Join(name + ".key"), "-out", dir_.Join(name + ".csr"), "-subj",
                 "/CN=" + cn}) &&
           Step({"x509", "-req", "-in", dir_.Join(name + ".csr"), "-CA", dir_.Join(ca + ".crt"),
                 "-CAkey", dir_.Join(ca + ".key"), "-set_serial", "2", "-days", "2", "-out",
                 dir_.Join(name + ".crt"), "-extfile", dir_.Join(name + ".ext")});
  }

  bool Make() {
    for (const char* ca : {"ca", "rogue"}) {
      if (!Step({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", dir_.Join(std::string(ca) + ".key"), "-out",
                 dir_.Join(std::string(ca) + ".crt"), "-days", "2", "-subj",
                 absl::StrCat("/CN=cairn test ", ca)})) {
        return false;
      }
    }
    return Leaf("server", "ca", "localhost",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n") &&
           Leaf("client", "ca", "cairn-client", "basicConstraints=CA:FALSE\n") &&
           Leaf("rogue-client", "rogue", "cairn-client", "basicConstraints=CA:FALSE\n");
  }

  TempDir dir_;
  bool ok_ = false;
  std::string error_;
};

std::vector<SaveTensor> OneTensor(const std::string& data) {
  return {{"w", DataType::kFloat, {static_cast<int64_t>(data.size() / 4)}, std::nullopt, data, {}}};
}

// Saves and restores one tensor through `options`.
void SaveAndRestore(const ClientOptions& options, const std::string& job) {
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  const std::string data(4096, 'z');
  auto saved = (*client)->SaveShard({job, 7, 0, 1, {}}, OneTensor(data));
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_TRUE(saved->committed);
  auto restored = (*client)->Restore(job, std::nullopt, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_EQ(restored->count("w"), 1u);
  EXPECT_EQ(restored->at("w").tensor.data.view(), data);
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Certs::Get().ok()) GTEST_SKIP() << "missing dependency: openssl tool (making test certificates failed: "
                                         << Certs::Get().error() << ")";
  }
  const Certs& certs() const { return Certs::Get(); }
  TempDir dir_;
};

// The commit's merge ran on a writer, over the same secured channel, not in
// the coordinator's fallback (which would hide a broken coordinator→writer
// link behind a working commit).
void ExpectRemoteMerge(const Cluster& cluster, const std::string& job) {
  EXPECT_FALSE(absl::StrContains(testing::ReadFile(cluster.coordinator_log()), "no writer could merge"))
      << testing::ReadFile(cluster.coordinator_log());
  std::string writers;
  for (int i = 0; i < cluster.num_writers(); ++i) writers += testing::ReadFile(cluster.writer_log(i));
  EXPECT_TRUE(absl::StrContains(writers, absl::StrCat("index parts into ", job, "/.cairn-staging/")))
      << writers;
}

TEST_F(TlsTest, SaveListRestoreOverTls) {
  Cluster cluster(dir_.path(), 2, certs().ServerFlags(false), {}, certs().ServerFlags(false));
  ASSERT_TRUE(cluster.ok()) << testing::ReadFile(cluster.coordinator_log());
  ClientOptions options;
  options.coordinator = cluster.coordinator();
  options.tls.ca_file = certs().ca();
  SaveAndRestore(options, "tls-job");
  ExpectRemoteMerge(cluster, "tls-job");
  RunResult list = Cairn({"list", "--coordinator=" + cluster.coordinator(), "--job=tls-job",
                          "--tls-ca=" + certs().ca()});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(absl::StrContains(list.out, "7")) << list.out;
}

TEST_F(TlsTest, PlaintextClientFailsCleanly) {
  Cluster cluster(dir_.path(), 1, certs().ServerFlags(false), {}, certs().ServerFlags(false));
  ASSERT_TRUE(cluster.ok());
  const auto start = std::chrono::steady_clock::now();
  RunResult r = Cairn({"list", "--coordinator=" + cluster.coordinator(), "--job=j"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "TLS")) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  // A client trusting another CA is refused too.
  r = Cairn({"list", "--coordinator=" + cluster.coordinator(), "--job=j",
             "--tls-ca=" + certs().rogue_ca()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
}

TEST_F(TlsTest, TlsClientAgainstPlaintextServerFails) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  RunResult r = Cairn({"list", "--coordinator=" + cluster.coordinator(), "--job=j",
                       "--tls-ca=" + certs().ca()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
}

TEST_F(TlsTest, MutualTls) {
  Cluster cluster(dir_.path(), 2, certs().ServerFlags(true), {}, certs().ServerFlags(true));
  ASSERT_TRUE(cluster.ok()) << testing::ReadFile(cluster.coordinator_log());
  ClientOptions options;
  options.coordinator = cluster.coordinator();
  options.tls.ca_file = certs().ca();
  options.tls.cert_file = certs().client_cert();
  options.tls.key_file = certs().client_key();
  SaveAndRestore(options, "mtls-job");
  ExpectRemoteMerge(cluster, "mtls-job");

  // Without a client certificate: refused.
  options.tls.cert_file.clear();
  options.tls.key_file.clear();
  options.rpc_timeout_ms = 10000;
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok());
  auto list = (*client)->List("mtls-job");
  EXPECT_FALSE(list.ok());
  RunResult r = Cairn({"list", "--coordinator=" + cluster.coordinator(), "--job=mtls-job",
                       "--tls-ca=" + certs().ca()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  // With a certificate from an untrusted CA: refused.
  r = Cairn({"list", "--coordinator=" + cluster.coordinator(), "--job=mtls-job",
             "--tls-ca=" + certs().ca(), "--tls-cert=" + certs().rogue_client_cert(),
             "--tls-key=" + certs().rogue_client_key()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  // With the right one, the CLI works.
  r = Cairn({"list", "--coordinator=" + cluster.coordinator(), "--job=mtls-job",
             "--tls-ca=" + certs().ca(), "--tls-cert=" + certs().client_cert(),
             "--tls-key=" + certs().client_key()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(ListenGuardTest, NonLoopbackNeedsTlsOrInsecure) {
  TempDir dir;
  RunResult r = testing::Run({BinPath("cairn-coordinator"), "--listen=0.0.0.0:0", "--db=" + dir.Join("db"),
                     "--storage=" + dir.Join("storage")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "--insecure")) << r.err;
  r = testing::Run({BinPath("cairn-writer"), "--coordinator=127.0.0.1:1", "--listen=0.0.0.0:0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "--insecure")) << r.err;
  {
    ServerProcess insecure({BinPath("cairn-coordinator"), "--listen=0.0.0.0:0", "--insecure",
                            "--db=" + dir.Join("db"), "--storage=" + dir.Join("storage")},
                           dir.Join("c.log"));
    EXPECT_FALSE(insecure.address().empty()) << testing::ReadFile(dir.Join("c.log"));
  }
  EXPECT_TRUE(rpc::IsLoopbackListen("127.0.0.1:1"));
  EXPECT_TRUE(rpc::IsLoopbackListen("127.1.2.3:1"));
  EXPECT_TRUE(rpc::IsLoopbackListen("localhost:1"));
  EXPECT_TRUE(rpc::IsLoopbackListen("[::1]:1"));
  EXPECT_FALSE(rpc::IsLoopbackListen("[::]:1"));
  EXPECT_FALSE(rpc::IsLoopbackListen("10.0.0.1:1"));
  EXPECT_FALSE(rpc::IsLoopbackListen(":1"));
}

TEST_F(TlsTest, NonLoopbackWithTlsStarts) {
  ServerProcess server({BinPath("cairn-coordinator"), "--listen=0.0.0.0:0", "--db=" + dir_.Join("db"),
                        "--storage=" + dir_.Join("storage"), "--tls-cert=" + certs().server_cert(),
                        "--tls-key=" + certs().server_key()},
                       dir_.Join("c.log"));
  EXPECT_FALSE(server.address().empty()) << testing::ReadFile(dir_.Join("c.log"));
}

// ---------------------------------------------------------- authorization

constexpr char kJob[] = "job-a";
constexpr char kOtherJob[] = "job-b";

// Who may make a call.
enum class Needs { kRead, kWrite, kCluster, kAdminRead };

struct Rpc {
  const char* name;
  Needs needs;
  // Makes the call about kJob with `token` ("" = none).
  std::function<grpc::Status(const std::string& token)> call;
};

// One cluster with authorization for every case; job-a has step 1.
class AuthEnv {
 public:
  // Created on first use, shared by every case of this process, and torn
  // down (servers stopped) by the global test environment below.
  static AuthEnv& Get() {
    if (!Slot()) Slot().reset(new AuthEnv());
    return *Slot();
  }
  static std::unique_ptr<AuthEnv>& Slot() {
    static std::unique_ptr<AuthEnv> slot;
    return slot;
  }
  bool ok() const { return cluster_->ok() && saved_; }
  const std::string& key() const { return key_; }
  const std::string& key_file() const { return key_file_; }
  Cluster& cluster() { return *cluster_; }
  std::string Token(const std::string& job, auth::Scope scope, int64_t ttl = 600) const {
    return auth::MintToken(key_, job, scope, auth::NowUnixSeconds() + ttl);
  }

  v1::Coordinator::Stub& coordinator() { return *coordinator_; }
  v1::ShardWriter::Stub& writer() { return *writer_; }

  static std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
    auto ctx = rpc::Context(std::chrono::seconds(30));
    rpc::SetBearerToken(ctx.get(), token);
    return ctx;
  }

 private:
  AuthEnv() {
    key_ = "an-authorization-key-for-tests-0123456789";
    key_file_ = dir_.Join("auth.key");
    testing::WriteFile(key_file_, key_ + "\n");
    cluster_ = std::make_unique<Cluster>(dir_.path(), 1,
                                         std::vector<std::string>{"--auth-key-file=" + key_file_},
                                         std::vector<std::string>{},
                                         std::vector<std::string>{"--auth-key-file=" + key_file_});
    if (!cluster_->ok()) return;
    coordinator_ = v1::Coordinator::NewStub(rpc::NewChannel(cluster_->coordinator()));
    writer_ = v1::ShardWriter::NewStub(rpc::NewChannel(cluster_->writer_process(0).address()));
    ClientOptions options;
    options.coordinator = cluster_->coordinator();
    options.token = Token(kJob, auth::Scope::kWrite);
    auto client = Client::Connect(options);
    if (!client.ok()) return;
    saved_ = (*client)->SaveShard({kJob, 1, 0, 1, {}}, OneTensor(std::string(64, 'a'))).ok();
  }

  TempDir dir_;
  std::string key_;
  std::string key_file_;
  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_;
  std::unique_ptr<v1::ShardWriter::Stub> writer_;
  bool saved_ = false;
};

// Stops the shared cluster's servers when the test program ends.
class AuthEnvTeardown : public ::testing::Environment {
 public:
  void TearDown() override { AuthEnv::Slot().reset(); }
};
::testing::Environment* const kAuthEnvTeardown =
    ::testing::AddGlobalTestEnvironment(new AuthEnvTeardown);

std::vector<Rpc> AllRpcs() {
  return {
      {"RegisterWriter", Needs::kCluster,
       [](const std::string& t) {
         v1::RegisterWriterRequest req;
         req.set_address(AuthEnv::Get().cluster().writer_process(0).address());
         v1::RegisterWriterResponse resp;
         return AuthEnv::Get().coordinator().RegisterWriter(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"Heartbeat", Needs::kCluster,
       [](const std::string& t) {
         v1::HeartbeatRequest req;
         req.set_writer_id("w-unknown");
         v1::HeartbeatResponse resp;
         return AuthEnv::Get().coordinator().Heartbeat(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"BeginShard", Needs::kWrite,
       [](const std::string& t) {
         v1::BeginShardRequest req;
         req.set_job(kJob);
         req.set_step(99);
         req.set_shard_index(0);
         req.set_num_shards(2);
         v1::BeginShardResponse resp;
         return AuthEnv::Get().coordinator().BeginShard(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"ShardDurable", Needs::kCluster,
       [](const std::string& t) {
         v1::ShardDurableRequest req;
         req.set_job(kJob);
         req.set_step(98);
         req.set_token("no-such-attempt");
         v1::ShardDurableResponse resp;
         return AuthEnv::Get().coordinator().ShardDurable(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"List", Needs::kRead,
       [](const std::string& t) {
         v1::ListRequest req;
         req.set_job(kJob);
         v1::ListResponse resp;
         return AuthEnv::Get().coordinator().List(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"Get", Needs::kRead,
       [](const std::string& t) {
         v1::GetRequest req;
         req.set_job(kJob);
         req.set_latest(true);
         v1::GetResponse resp;
         return AuthEnv::Get().coordinator().Get(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"ListWriters", Needs::kAdminRead,
       [](const std::string& t) {
         v1::ListWritersResponse resp;
         return AuthEnv::Get().coordinator().ListWriters(AuthEnv::Context(t).get(), v1::ListWritersRequest(), &resp);
       }},
      {"SetPolicy", Needs::kWrite,
       [](const std::string& t) {
         v1::SetPolicyRequest req;
         req.set_job(kJob);
         v1::SetPolicyResponse resp;
         return AuthEnv::Get().coordinator().SetPolicy(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"GetPolicy", Needs::kRead,
       [](const std::string& t) {
         v1::GetPolicyRequest req;
         req.set_job(kJob);
         v1::GetPolicyResponse resp;
         return AuthEnv::Get().coordinator().GetPolicy(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"Pin", Needs::kWrite,
       [](const std::string& t) {
         v1::PinRequest req;
         req.set_job(kJob);
         req.set_step(1);
         req.set_pinned(false);
         v1::PinResponse resp;
         return AuthEnv::Get().coordinator().Pin(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"Gc", Needs::kWrite,
       [](const std::string& t) {
         v1::GcRequest req;
         req.set_job(kJob);
         req.set_dry_run(true);
         v1::GcResponse resp;
         return AuthEnv::Get().coordinator().Gc(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"AcquireLease", Needs::kRead,
       [](const std::string& t) {
         v1::AcquireLeaseRequest req;
         req.set_job(kJob);
         req.set_step(1);
         req.set_ttl_ms(1000);
         v1::AcquireLeaseResponse resp;
         return AuthEnv::Get().coordinator().AcquireLease(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"ReleaseLease", Needs::kRead,
       [](const std::string& t) {
         // A fresh lease on job-a, taken with an admin token.
         v1::AcquireLeaseRequest acquire;
         acquire.set_job(kJob);
         acquire.set_step(1);
         acquire.set_ttl_ms(60000);
         v1::AcquireLeaseResponse lease;
         grpc::Status s = AuthEnv::Get().coordinator().AcquireLease(
             AuthEnv::Context(AuthEnv::Get().Token(auth::kAnyJob, auth::Scope::kRead)).get(), acquire,
             &lease);
         if (!s.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "setup: " + s.error_message());
         v1::ReleaseLeaseRequest req;
         req.set_lease_id(lease.lease_id());
         v1::ReleaseLeaseResponse resp;
         return AuthEnv::Get().coordinator().ReleaseLease(AuthEnv::Context(t).get(), req, &resp);
       }},
      {"SaveShard", Needs::kWrite,
       [](const std::string& t) {
         auto ctx = AuthEnv::Context(t);
         v1::SaveShardResponse resp;
         auto stream = AuthEnv::Get().writer().SaveShard(ctx.get(), &resp);
         v1::SaveShardMessage msg;
         auto* h = msg.mutable_header();
         h->set_job(kJob);
         h->set_step(97);
         h->set_shard_index(0);
         h->set_num_shards(1);
         h->set_token("no-such-attempt");
         h->set_staging_prefix("outside/the/staging/area");
         stream->Write(msg);
         stream->WritesDone();
         return stream->Finish();
       }},
      {"Merge", Needs::kCluster,
       [](const std::string& t) {
         v1::MergeRequest req;
         req.add_part_prefixes("not/staging");
         req.set_output_prefix("x");
         v1::MergeResponse resp;
         return AuthEnv::Get().writer().Merge(AuthEnv::Context(t).get(), req, &resp);
       }},
  };
}

class RpcAuthTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { ASSERT_TRUE(AuthEnv::Get().ok()) << "cluster with auth did not start"; }
};

TEST_P(RpcAuthTest, RefusesWrongTokensAcceptsTheRightOne) {
  AuthEnv& env = AuthEnv::Get();
  const Rpc rpc = AllRpcs()[GetParam()];
  SCOPED_TRACE(rpc.name);
  auto expect = [&rpc](grpc::StatusCode code, const std::string& token, const char* what) {
    grpc::Status s = rpc.call(token);
    EXPECT_EQ(s.error_code(), code) << rpc.name << " with " << what << ": " << s.error_message();
    return s;
  };
  // The token that should work, and one of the same kind for another job.
  std::string right, other_job;
  switch (rpc.needs) {
    case Needs::kRead:
      right = env.Token(kJob, auth::Scope::kRead);
      other_job = env.Token(kOtherJob, auth::Scope::kWrite);
      break;
    case Needs::kWrite:
      right = env.Token(kJob, auth::Scope::kWrite);
      other_job = env.Token(kOtherJob, auth::Scope::kWrite);
      // A read token does not write.
      expect(grpc::StatusCode::PERMISSION_DENIED, env.Token(kJob, auth::Scope::kRead),
             "a read token");
      break;
    case Needs::kCluster:
      right = auth::MintClusterToken(env.key());
      other_job = env.Token(kJob, auth::Scope::kWrite);  // a client's token
      expect(grpc::StatusCode::PERMISSION_DENIED, env.Token(auth::kAnyJob, auth::Scope::kWrite),
             "an admin token");
      break;
    case Needs::kAdminRead:
      right = env.Token(auth::kAnyJob, auth::Scope::kRead);
      other_job = env.Token(kJob, auth::Scope::kWrite);
      break;
  }
  expect(grpc::StatusCode::UNAUTHENTICATED, "", "no token");
  expect(grpc::StatusCode::UNAUTHENTICATED, "garbage.token", "a malformed token");
  expect(grpc::StatusCode::UNAUTHENTICATED,
         auth::MintToken("some-other-key-0123456789", kJob, auth::Scope::kWrite,
                         auth::NowUnixSeconds() + 600),
         "a token signed with another key");
  {
    // The right token, expired.
    auto claims = auth::VerifyToken(env.key(), right, auth::NowUnixSeconds());
    ASSERT_TRUE(claims.ok());
    expect(grpc::StatusCode::UNAUTHENTICATED,
           auth::MintToken(env.key(), claims->job, claims->scope, auth::NowUnixSeconds() - 1),
           "an expired token");
  }
  grpc::Status s = expect(grpc::StatusCode::PERMISSION_DENIED, other_job, "another job's token");
  if (rpc.needs == Needs::kRead || rpc.needs == Needs::kWrite) {
    EXPECT_TRUE(absl::StrContains(s.error_message(), kJob)) << s.error_message();
  }
  s = rpc.call(right);
  EXPECT_NE(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_NE(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_NE(s.error_code(), grpc::StatusCode::INTERNAL) << s.error_message();
}

INSTANTIATE_TEST_SUITE_P(EveryRpc, RpcAuthTest,
                         ::testing::Range(0, static_cast<int>(AllRpcs().size())),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(AllRpcs()[info.param].name);
                         });

TEST(AuthEndToEndTest, ClientAndCliWithTokens) {
  AuthEnv& env = AuthEnv::Get();
  ASSERT_TRUE(env.ok());
  // `cairn token` issues a token the servers accept.
  RunResult issued = Cairn({"token", "--auth-key-file=" + env.key_file(), "--job=job-c",
                            "--scope=write", "--ttl=600"});
  ASSERT_EQ(issued.exit_code, 0) << issued.err;
  const std::string token = issued.out.substr(0, issued.out.find('\n'));
  ClientOptions options;
  options.coordinator = env.cluster().coordinator();
  options.token = token;
  SaveAndRestore(options, "job-c");
  ExpectRemoteMerge(env.cluster(), "job-c");
  RunResult list = Cairn({"list", "--coordinator=" + env.cluster().coordinator(), "--job=job-c",
                          "--token=" + token});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  // The same token gives nothing on job-a, and no token nothing at all.
  list = Cairn({"list", "--coordinator=" + env.cluster().coordinator(), "--job=" + std::string(kJob),
                "--token=" + token});
  EXPECT_EQ(list.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(list.err, kJob)) << list.err;
  list = Cairn({"list", "--coordinator=" + env.cluster().coordinator(), "--job=job-c"});
  EXPECT_EQ(list.exit_code, 1);
  // A token for job-c cannot save into job-a.
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok());
  auto saved = (*client)->SaveShard({kJob, 5, 0, 1, {}}, OneTensor(std::string(64, 'b')));
  EXPECT_TRUE(absl::IsPermissionDenied(saved.status())) << saved.status();
}

}  // namespace
}  // namespace cairn
