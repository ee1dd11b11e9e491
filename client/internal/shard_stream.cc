#include "client/internal/shard_stream.h"

#include "proto/cairn.grpc.pb.h"

namespace cairn {
namespace internal {
namespace {

// SaveShardMessage.data is field 3, length-delimited (proto/cairn.proto).
constexpr uint8_t kDataTag = (3 << 3) | 2;
constexpr char kSaveShardMethod[] = "/cairn.v1.ShardWriter/SaveShard";

}  // namespace

std::string DataFieldFraming(size_t n) {
  std::string out(1, static_cast<char>(kDataTag));
  uint64_t v = n;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}

ShardStream::ShardStream(const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* ctx,
                         v1::SaveShardResponse* response)
    : method_(kSaveShardMethod, grpc::internal::RpcMethod::CLIENT_STREAMING, channel) {
  writer_.reset(grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(channel.get(), method_,
                                                                              ctx, response));
}

ShardStream::~ShardStream() {
  writer_.reset();
  WaitForSlices();
}

bool ShardStream::Write(const v1::SaveShardMessage& msg) {
  const std::string bytes = msg.SerializeAsString();
  grpc::Slice slice(bytes.data(), bytes.size());  // copied: headers are small
  grpc::ByteBuffer buffer(&slice, 1);
  return writer_->Write(buffer);
}

bool ShardStream::WriteData(const char* data, size_t n) {
  const std::string framing = DataFieldFraming(n);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++outstanding_;
  }
  grpc::Slice slices[2] = {
      grpc::Slice(framing.data(), framing.size()),
      // Not copied: gRPC reads the caller's bytes when it sends them and
      // calls Released when it lets go of them.
      grpc::Slice(const_cast<char*>(data), n, &ShardStream::Released, this),
  };
  grpc::ByteBuffer buffer(slices, 2);
  return writer_->Write(buffer);
}

bool ShardStream::WritesDone() { return writer_->WritesDone(); }

grpc::Status ShardStream::Finish() {
  grpc::Status status = writer_->Finish();
  writer_.reset();
  WaitForSlices();
  return status;
}

void ShardStream::Released(void* tracker) {
  auto* self = static_cast<ShardStream*>(tracker);
  std::lock_guard<std::mutex> lock(self->mu_);
  if (--self->outstanding_ == 0) self->released_.notify_all();
}

void ShardStream::WaitForSlices() {
  std::unique_lock<std::mutex> lock(mu_);
  released_.wait(lock, [this] { return outstanding_ == 0; });
}

}  // namespace internal
}  // namespace cairn
