#include "shard_writer/shard_writer.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/method_handler.h>
#include <malloc.h>
#include <openssl/sha.h>

#include <atomic>
#include <cstring>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/cairn.grpc.pb.h"
#include "proto/rpc/auth.h"
#include "observability/http_endpoint.h"
#include "observability/metrics.h"
#include "observability/version.h"
#include "storage/metered_storage.h"
#include "proto/rpc/rpc_util.h"
#include "observability/log.h"
#include "shard_writer/internal/raw_message.h"
#include "shard_writer/internal/tensor_stream.h"
#include "storage/bundle/bundle_merge.h"
#include "storage/bundle/bundle_writer.h"
#include "storage/bundle/crc32c.h"
#include "proto/layout.h"
#include "storage/status_macros.h"
#include "storage/storage.h"
#include "storage/bundle/tensor.h"

namespace cairn {
namespace {

using logging::Log;

metrics::CounterMetric& SaveErrors(absl::StatusCode code) {
  return metrics::Counter("cairn_writer_errors_total", "Failed shard saves by status code.",
                          {{"code", absl::StatusCodeToString(code)}});
}

// What a shard save can fail with: their series exist from the start, at
// zero, so a rate or an increase sees the first failure too.
constexpr absl::StatusCode kSaveErrorCodes[] = {
    absl::StatusCode::kInvalidArgument,  absl::StatusCode::kUnauthenticated,
    absl::StatusCode::kPermissionDenied, absl::StatusCode::kResourceExhausted,
    absl::StatusCode::kCancelled,        absl::StatusCode::kAborted,
    absl::StatusCode::kFailedPrecondition, absl::StatusCode::kNotFound,
    absl::StatusCode::kUnavailable,      absl::StatusCode::kDeadlineExceeded,
    absl::StatusCode::kDataLoss,         absl::StatusCode::kInternal,
};

metrics::CounterMetric& BytesWritten() {
  static auto& c = metrics::Counter("cairn_writer_bytes_written_total", "Data file bytes made durable.");
  return c;
}

// SaveShard is served from the received bytes (grpc::ByteBuffer) instead of
// parsed SaveShardMessages, so tensor bytes are not copied into protobuf
// strings first (internal/raw_message.h); the wire format is unchanged.
// The handler to swap is found by its index among the service's methods,
// which gRPC's generated code registers in the .proto's order: the same
// index the protobuf descriptor gives.
int SaveShardMethodIndex() {
  static const int index = v1::SaveShardMessage::descriptor()
                               ->file()
                               ->FindServiceByName("ShardWriter")
                               ->FindMethodByName("SaveShard")
                               ->index();
  return index;
}

class WriterService final : public v1::ShardWriter::Service {
 public:
  WriterService(const WriterOptions& options, std::shared_ptr<grpc::Channel> coordinator)
      : options_(options), coordinator_(v1::Coordinator::NewStub(coordinator)) {
    // Replaces the generated (parsing) handler. MarkMethodStreamed is the
    // one protected hook that swaps a sync handler; it also marks the method
    // bidi-streaming, which a sync server treats as client-streaming (it
    // reads no message before calling the handler).
    MarkMethodStreamed(
        SaveShardMethodIndex(),
        new grpc::internal::ClientStreamingHandler<WriterService, grpc::ByteBuffer,
                                                   v1::SaveShardResponse>(
            [](WriterService* service, grpc::ServerContext* ctx,
               grpc::ServerReader<grpc::ByteBuffer>* reader, v1::SaveShardResponse* resp) {
              return service->SaveShardRaw(ctx, reader, resp);
            },
            this));
  }

  void SetStorage(std::unique_ptr<Storage> storage) { storage_ = std::move(storage); }
  void SetAttemptKey(const std::string& key) {
    std::lock_guard<std::mutex> lock(key_mu_);
    attempt_key_ = key;
  }
  int active_streams() const { return active_.load(); }

  // Hands freed memory (received chunks, direct-I/O buffers) back to the
  // system once no stream has run for kTrimAfterIdle. main.cc keeps freed
  // memory for reuse meanwhile: the shards of one checkpoint, and the
  // checkpoints of a run saving often, arrive in waves, and a wave that
  // finds the memory gone faults all of it in again (~10% of a writer's
  // CPU per byte when trimmed after every stream). Called by the heartbeat.
  void TrimIfIdle() {
    static auto& trims = metrics::Counter(
        "cairn_writer_memory_trims_total", "Times an idle writer handed freed memory back.");
    {
      std::lock_guard<std::mutex> lock(trim_mu_);
      if (!trim_due_ || active_.load() > 0 ||
          std::chrono::steady_clock::now() - idle_since_ < kTrimAfterIdle) {
        return;
      }
      trim_due_ = false;
    }
    ::malloc_trim(0);
    trims.Add(1);
  }

  grpc::Status SaveShardRaw(grpc::ServerContext* ctx, grpc::ServerReader<grpc::ByteBuffer>* reader,
                            v1::SaveShardResponse* resp) {
    static auto& active = metrics::Gauge("cairn_writer_active_streams", "Shard streams being received.");
    static auto& latency = metrics::LatencyHistogram(
        "cairn_writer_shard_save_seconds", "Time from a shard stream's start until the shard is durable.");
    const auto start = std::chrono::steady_clock::now();
    active.Set(++active_);
    logging::Where where;  // filled in once the stream's header is read
    absl::Status s = DoSaveShard(ctx, reader, resp, &where);
    const int still_active = --active_;
    active.Set(still_active);
    if (still_active == 0) {
      std::lock_guard<std::mutex> lock(trim_mu_);
      idle_since_ = std::chrono::steady_clock::now();
      trim_due_ = true;
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (s.ok()) {
      latency.Observe(secs);
      Log(where, absl::StrFormat("shard durable: %d tensors, %d bytes in %.3f s%s", resp->num_tensors(),
                                 resp->bytes(), secs, resp->committed() ? "; checkpoint committed" : ""));
    } else {
      SaveErrors(s.code()).Add(1);
      Log(where, absl::StrCat("shard save failed: ", absl::StatusCodeToString(s.code()), ": ",
                              s.message()));
    }
    return rpc::ToGrpc(s);
  }

  grpc::Status Merge(grpc::ServerContext* ctx, const v1::MergeRequest* req,
                     v1::MergeResponse* resp) override {
    if (absl::Status s = Authorize(*ctx, auth::kAnyJob, auth::Scope::kCluster); !s.ok()) {
      return rpc::ToGrpc(s);
    }
    std::vector<std::string> parts(req->part_prefixes().begin(), req->part_prefixes().end());
    if (absl::Status s = ValidateMergePaths(parts, req->output_prefix()); !s.ok()) {
      return rpc::ToGrpc(s);
    }
    auto files = MergeBundleParts(storage_.get(), parts, req->output_prefix());
    if (!files.ok()) return rpc::ToGrpc(files.status());
    Log(absl::StrCat("merged ", parts.size(), " index parts into ", req->output_prefix()));
    for (const MergedFile& f : *files) {
      auto* info = resp->add_files();
      info->set_path(f.path);
      info->set_size(f.size);
      info->set_crc32c(f.crc32c);
      info->set_sha256(f.sha256);
    }
    return grpc::Status::OK;
  }

 private:
  // OK if authorization is off or the call's token allows `scope` on `job`.
  absl::Status Authorize(const grpc::ServerContext& ctx, const std::string& job,
                         auth::Scope scope) {
    if (options_.auth_key.empty()) return absl::OkStatus();
    return auth::Authorize(options_.auth_key, rpc::BearerToken(ctx), job, scope,
                           auth::NowUnixSeconds());
  }

  // A merge reads the parts of one checkpoint's staging area and writes its
  // merged files there, nowhere else: output JOB/.cairn-staging/ckpt-STEP/
  // merged/variables, parts JOB/.cairn-staging/ckpt-STEP/shard-*.
  static absl::Status ValidateMergePaths(const std::vector<std::string>& parts,
                                         const std::string& output) {
    auto refuse = [](const std::string& what, const std::string& path) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", what, " \"", path, "\" is not in a checkpoint's staging area"));
    };
    // D/merged/variables or D/merged-DIGITS/variables.
    constexpr char kVariables[] = "/variables";
    if (!absl::EndsWith(output, kVariables) || absl::StrContains(output, "..") ||
        absl::StrContains(output, "//")) {
      return refuse("output", output);
    }
    const std::string merged_dir = output.substr(0, output.size() - std::strlen(kVariables));
    const size_t slash = merged_dir.rfind('/');
    if (slash == std::string::npos) return refuse("output", output);
    const std::string leaf = merged_dir.substr(slash + 1);
    if (leaf != "merged" && !(absl::StartsWith(leaf, "merged-") && leaf.size() > 7 &&
                              leaf.find_first_not_of("0123456789", 7) == std::string::npos)) {
      return refuse("output", output);
    }
    const std::string dir = merged_dir.substr(0, slash);
    const size_t staging = dir.find("/.cairn-staging/ckpt-");
    if (staging == std::string::npos || !ValidateJobName(dir.substr(0, staging)).ok()) {
      return refuse("output", output);
    }
    const std::string step = dir.substr(staging + std::strlen("/.cairn-staging/ckpt-"));
    if (step.empty() || step.size() > 19 || step.find_first_not_of("0123456789") != std::string::npos) {
      return refuse("output", output);
    }
    if (parts.empty()) return absl::InvalidArgumentError("merge of no parts");
    for (const std::string& p : parts) {
      if (!absl::StartsWith(p, dir + "/shard-") || absl::StrContains(p, "..") ||
          absl::StrContains(p, "//")) {
        return refuse("input", p);
      }
    }
    return absl::OkStatus();
  }

  absl::Status ValidateHeader(const v1::SaveShardHeader& h) {
    RETURN_IF_ERROR(ValidateJobName(h.job()));
    RETURN_IF_ERROR(ValidateStep(h.step()));
    if (h.num_shards() < 1 || h.shard_index() < 0 || h.shard_index() >= h.num_shards()) {
      return absl::InvalidArgumentError(absl::StrCat("bad shard ", h.shard_index(), " of ",
                                                     h.num_shards()));
    }
    // Writers only ever write inside the job's own staging area.
    const std::string staging = StagingDir(h.job(), h.step()) + "/";
    if (!absl::StartsWith(h.staging_prefix(), staging) ||
        absl::StrContains(h.staging_prefix().substr(staging.size()), "..") || h.token().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("staging prefix \"", h.staging_prefix(), "\" is not in ", staging));
    }
    // The coordinator issued this attempt for exactly this shard and
    // prefix: checked before a byte is written.
    std::string key;
    {
      std::lock_guard<std::mutex> lock(key_mu_);
      key = attempt_key_;
    }
    return auth::VerifyAttemptToken(
        key, h.token(),
        {h.job(), h.step(), h.shard_index(), h.num_shards(), h.staging_prefix()});
  }

  absl::Status DoSaveShard(grpc::ServerContext* ctx,
                           grpc::ServerReader<grpc::ByteBuffer>* reader,
                           v1::SaveShardResponse* resp, logging::Where* where) {
    grpc::ByteBuffer buffer;
    internal::ReceivedMessage in;
    const v1::SaveShardMessage& msg = in.message;
    if (!reader->Read(&buffer)) {
      if (ctx->IsCancelled()) return absl::CancelledError("the client went away before the header");
      return absl::InvalidArgumentError("a SaveShard stream must start with its header");
    }
    if (!internal::ParseReceived(&buffer, &in).ok() || in.is_data ||
        msg.kind_case() != v1::SaveShardMessage::kHeader) {
      return absl::InvalidArgumentError("a SaveShard stream must start with its header");
    }
    const v1::SaveShardHeader header = msg.header();
    where->job = header.job();
    where->step = header.step();
    where->shard = header.shard_index();
    where->num_shards = header.num_shards();
    RETURN_IF_ERROR(Authorize(*ctx, header.job(), auth::Scope::kWrite));
    RETURN_IF_ERROR(ValidateHeader(header));
    const std::string what = absl::StrCat("shard ", header.shard_index(), "/", header.num_shards(),
                                          " of ", header.job(), "/", header.step());
    BundleWriter::Options writer_options;
    writer_options.sha256 = options_.inventory_sha256;  // for `cairn verify --deep`
    ASSIGN_OR_RETURN(auto writer,
                     BundleWriter::Create(storage_.get(), header.staging_prefix(), writer_options));
    internal::TensorStreamOptions stream_options;
    stream_options.max_shard_bytes = options_.max_shard_bytes;
    stream_options.accept_batches = options_.accept_tensor_batches;
    ASSIGN_OR_RETURN(const int64_t tensors,
                     internal::ReadTensors(ctx, reader, writer.get(), stream_options, what));
    const uint64_t data_bytes = writer->data_bytes();
    const uint32_t data_crc = writer->data_crc32c();
    const std::string data_sha = writer->data_sha256();
    RETURN_IF_ERROR(writer->Finish());
    BytesWritten().Add(static_cast<double>(data_bytes));

    v1::ShardDurableRequest report;
    report.set_job(header.job());
    report.set_step(header.step());
    report.set_shard_index(header.shard_index());
    report.set_token(header.token());
    report.set_bytes(data_bytes);
    report.set_num_tensors(tensors);
    auto* data_file = report.add_files();
    data_file->set_path(DataFileName(header.staging_prefix(), 0, 1));
    data_file->set_size(data_bytes);
    data_file->set_crc32c(data_crc);
    data_file->set_sha256(data_sha);
    ASSIGN_OR_RETURN(auto index, DescribeFile(IndexFileName(header.staging_prefix())));
    *report.add_files() = index;

    v1::ShardDurableResponse ack;
    absl::Status s = Report(report, &ack);
    if (!s.ok()) {
      if (absl::IsFailedPrecondition(s)) {
        // Superseded by a retry, or the checkpoint was aborted: this
        // attempt's files are garbage.
        storage_->Delete(data_file->path()).IgnoreError();
        storage_->Delete(index.path()).IgnoreError();
        return absl::AbortedError(absl::StrCat(what, ": ", s.message()));
      }
      return s;
    }
    resp->set_committed(ack.committed());
    resp->set_bytes(data_bytes);
    resp->set_num_tensors(tensors);
    return absl::OkStatus();
  }

  absl::StatusOr<v1::FileInfo> DescribeFile(const std::string& path) {
    ASSIGN_OR_RETURN(auto file, storage_->NewReadableFile(path));
    std::string bytes(file->Size(), '\0');
    RETURN_IF_ERROR(file->ReadAt(0, bytes.size(), bytes.data()));
    v1::FileInfo info;
    info.set_path(path);
    info.set_size(bytes.size());
    info.set_crc32c(crc32c::Value(bytes.data(), bytes.size()));
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
    info.set_sha256(std::string(reinterpret_cast<char*>(digest), sizeof(digest)));
    return info;
  }

  // Reports durability, retrying while the coordinator is unreachable (it
  // may be restarting). The last shard's report returns after the commit.
  absl::Status Report(const v1::ShardDurableRequest& report, v1::ShardDurableResponse* ack) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.report_timeout_ms);
    auto backoff = std::chrono::milliseconds(100);
    while (true) {
      auto ctx = rpc::Context(std::chrono::minutes(10));
      if (!options_.auth_key.empty()) {
        rpc::SetBearerToken(ctx.get(), auth::MintClusterToken(options_.auth_key));
      }
      absl::Status s = rpc::FromGrpc(coordinator_->ShardDurable(ctx.get(), report, ack),
                                     absl::StrCat("coordinator ", options_.coordinator));
      if (!absl::IsUnavailable(s) || std::chrono::steady_clock::now() + backoff > deadline) {
        return s;
      }
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
  }

  const WriterOptions options_;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_;
  std::unique_ptr<Storage> storage_;
  std::atomic<int> active_{0};
  static constexpr std::chrono::seconds kTrimAfterIdle{10};
  std::mutex trim_mu_;
  std::chrono::steady_clock::time_point idle_since_;  // guarded by trim_mu_
  bool trim_due_ = false;                              // guarded by trim_mu_
  std::mutex key_mu_;
  std::string attempt_key_;  // guarded by key_mu_
};

}  // namespace

struct WriterServer::Rep {
  WriterOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<WriterService> service;
  std::unique_ptr<grpc::Server> server;
  std::string address;
  std::string writer_id;
  int64_t heartbeat_ms = 1000;
  std::thread heartbeat;
  std::unique_ptr<HttpEndpoint> http;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;

  absl::Status Register() {
    v1::Coordinator::Stub stub(channel);
    v1::RegisterWriterRequest req;
    req.set_address(options.advertise.empty() ? address : options.advertise);
    v1::RegisterWriterResponse resp;
    auto ctx = rpc::Context(std::chrono::seconds(10));
    if (!options.auth_key.empty()) {
      rpc::SetBearerToken(ctx.get(), auth::MintClusterToken(options.auth_key));
    }
    RETURN_IF_ERROR(rpc::FromGrpc(stub.RegisterWriter(ctx.get(), req, &resp),
                                  absl::StrCat("coordinator ", options.coordinator)));
    writer_id = resp.writer_id();
    heartbeat_ms = std::max<int64_t>(resp.heartbeat_interval_ms(), 50);
    service->SetAttemptKey(resp.attempt_key());
    if (!service->active_streams() && options.storage_uri.empty()) {
      options.storage_uri = resp.storage_uri();
    }
    return absl::OkStatus();
  }

  // One heartbeat; re-registers if the coordinator no longer knows us.
  void Beat(v1::Coordinator::Stub& stub) {
    v1::HeartbeatRequest req;
    req.set_writer_id(writer_id);
    req.set_active_streams(service->active_streams());
    req.set_bytes_written(static_cast<uint64_t>(BytesWritten().value()));
    if (options.accept_tensor_batches) req.set_features(v1::WRITER_FEATURE_TENSOR_BATCHES);
    v1::HeartbeatResponse resp;
    auto ctx = rpc::Context(std::chrono::milliseconds(std::max<int64_t>(heartbeat_ms, 1000)));
    if (!options.auth_key.empty()) {
      rpc::SetBearerToken(ctx.get(), auth::MintClusterToken(options.auth_key));
    }
    grpc::Status s = stub.Heartbeat(ctx.get(), req, &resp);
    if (s.ok() && resp.known()) service->SetAttemptKey(resp.attempt_key());
    if (s.ok() && !resp.known()) {
      absl::Status r = Register();
      if (!r.ok()) Log(absl::StrCat("re-registering: ", r.message()));
    }
  }

  // Beats every heartbeat_ms from the start of the previous beat (not from
  // its end), so the coordinator sees a steady rhythm.
  void HeartbeatLoop() {
    v1::Coordinator::Stub stub(channel);
    auto next = std::chrono::steady_clock::now() + std::chrono::milliseconds(heartbeat_ms);
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_until(lock, next, [this] { return stop; });
    while (!stop) {
      lock.unlock();
      Beat(stub);
      service->TrimIfIdle();
      next += std::chrono::milliseconds(heartbeat_ms);
      const auto now = std::chrono::steady_clock::now();
      if (next < now) next = now;
      lock.lock();
      cv.wait_until(lock, next, [this] { return stop; });
    }
  }
};

WriterServer::WriterServer(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
WriterServer::~WriterServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<WriterServer>> WriterServer::Start(const WriterOptions& options) {
  if (options.coordinator.empty()) return absl::InvalidArgumentError("--coordinator is required");
  auto rep = std::make_unique<Rep>();
  rep->options = options;
  RETURN_IF_ERROR(rpc::CheckListenSecurity(options.listen, options.tls, options.insecure));
  auto credentials = rpc::ServerCredentials(options.tls);
  if (!credentials.ok()) return credentials.status();
  ASSIGN_OR_RETURN(rep->channel, rpc::NewChannel(options.coordinator, options.tls));
  rep->service = std::make_unique<WriterService>(options, rep->channel);

  grpc::EnableDefaultHealthCheckService(true);  // grpc.health.v1.Health
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, *credentials, &port);
  builder.SetMaxReceiveMessageSize(rpc::kMaxMessageBytes);
  builder.SetMaxSendMessageSize(rpc::kMaxMessageBytes);
  rpc::RefusePortSharing(&builder);
  builder.RegisterService(rep->service.get());
  rep->server = builder.BuildAndStart();
  if (!rep->server || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  rep->address = absl::StrCat(options.listen.substr(0, options.listen.rfind(':')), ":", port);

  // Register, retrying while the coordinator starts up; saying so, so that
  // an operator whose coordinator address is wrong is not left guessing.
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::milliseconds(options.report_timeout_ms);
  auto next_note = start;
  bool noted = false;
  absl::Status s;
  while (!(s = rep->Register()).ok()) {
    const auto now = std::chrono::steady_clock::now();
    if (!absl::IsUnavailable(s) || now > deadline) {
      rep->server->Shutdown();
      return s;
    }
    if (now >= next_note) {
      Log(absl::StrCat(noted ? "still waiting for" : "waiting for",
                       " coordinator ", options.coordinator, " (retrying for up to ",
                       options.report_timeout_ms / 1000, " s, --report-timeout): ", s.message()));
      next_note = now + std::chrono::seconds(10);
      noted = true;
    }
    bool stop = false;
    if (options.stop_requested) {
      stop = options.stop_requested(200);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (stop) {
      rep->server->Shutdown();
      return absl::CancelledError(absl::StrCat("stopped while waiting for coordinator ",
                                               options.coordinator));
    }
  }
  StorageOptions storage_options = rep->options.storage;
  storage_options.local_direct_io = rep->options.direct_io;
  ASSIGN_OR_RETURN(auto storage, OpenStorage(rep->options.storage_uri, storage_options));
  rep->service->SetStorage(MeteredStorage(std::move(storage), "writer"));
  // The first beat makes this writer live; only now can it take shards.
  {
    v1::Coordinator::Stub stub(rep->channel);
    rep->Beat(stub);
  }
  Rep* raw = rep.get();
  rep->heartbeat = std::thread([raw] { raw->HeartbeatLoop(); });
  if (!options.metrics_listen.empty()) {
    // Every series exists from the start, at zero.
    internal::WriterBytesReceived();
    internal::WriterBatchedTensors();
    BytesWritten();
    for (absl::StatusCode code : kSaveErrorCodes) SaveErrors(code);
    metrics::Gauge("cairn_build_info", "Always 1; the labels say which Cairn this is.",
                   {{"version", CAIRN_VERSION}, {"component", "writer"}})
        .Set(1);
    metrics::Gauge("cairn_writer_active_streams", "Shard streams being received.");
    metrics::LatencyHistogram("cairn_writer_shard_save_seconds",
                              "Time from a shard stream's start until the shard is durable.");
    ASSIGN_OR_RETURN(rep->http, HttpEndpoint::Start(options.metrics_listen, {}));
    Log(absl::StrCat("metrics on http://", rep->http->address(), "/metrics"));
  }
  return std::unique_ptr<WriterServer>(new WriterServer(std::move(rep)));
}

std::string WriterServer::address() const { return rep_->address; }

void WriterServer::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(rep_->mu);
    if (rep_->stop) return;
    rep_->stop = true;
  }
  rep_->cv.notify_all();
  if (rep_->heartbeat.joinable()) rep_->heartbeat.join();
  if (rep_->http) rep_->http->Stop();
  rep_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

void WriterServer::Wait() { rep_->server->Wait(); }

}  // namespace cairn
