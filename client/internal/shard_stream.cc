#include "client/internal/shard_stream.h"

#include <chrono>
#include <vector>

#include "proto/cairn.grpc.pb.h"

namespace cairn {
namespace internal {
namespace {

// SaveShardMessage.data is field 3 and .batch field 4, both length-delimited
// (proto/cairn.proto).
constexpr uint8_t kDataTag = (3 << 3) | 2;
constexpr uint8_t kBatchTag = (4 << 3) | 2;
constexpr char kSaveShardMethod[] = "/cairn.v1.ShardWriter/SaveShard";
// Data messages smaller than this may wait in gRPC's buffer for the next
// message (a stream always ends with WritesDone, which flushes).
constexpr size_t kCoalesceBelowBytes = 256 << 10;

std::string FieldFraming(uint8_t tag, size_t n) {
  std::string out(1, static_cast<char>(tag));
  uint64_t v = n;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}

}  // namespace

std::string DataFieldFraming(size_t n) { return FieldFraming(kDataTag, n); }

std::string SerializeBatchMessage(const v1::TensorBatch& batch) {
  const size_t size = batch.ByteSizeLong();
  std::string out = FieldFraming(kBatchTag, size);
  const size_t head = out.size();
  out.resize(head + size);
  batch.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(&out[head]));
  return out;
}

size_t BatchedBytes(const SaveTensor& t) {
  size_t n = t.name.size() + t.data.size();
  // A string value's framing counts too: a million empty strings are not free.
  for (const std::string& v : t.strings) n += v.size() + 16;
  return n;
}

bool Batchable(const SaveTensor& t) { return BatchedBytes(t) < kBatchTensorBelow; }

void FillTensorHeader(const SaveTensor& t, v1::TensorHeader* out) {
  out->set_name(t.name);
  out->set_dtype(static_cast<int32_t>(t.dtype));
  out->mutable_shape()->Add(t.shape.begin(), t.shape.end());
  if (t.slice.has_value()) out->set_slice(t.slice->ToString());
  for (const std::string& value : t.strings) out->add_string_values(value);
}

ShardStream::ShardStream(const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* ctx,
                         v1::SaveShardResponse* response)
    : method_(kSaveShardMethod, grpc::internal::RpcMethod::CLIENT_STREAMING, channel),
      tracker_(new Tracker) {
  writer_.reset(grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(channel.get(), method_,
                                                                              ctx, response));
}

ShardStream::~ShardStream() {
  const bool ended = writer_ == nullptr;
  writer_.reset();
  WaitForSlices(ended);
}

bool ShardStream::Write(const v1::SaveShardMessage& msg) {
  return WriteHeader(msg.SerializeAsString());
}

bool ShardStream::WriteBatch(const v1::TensorBatch& batch) {
  return WriteHeader(SerializeBatchMessage(batch));
}

bool ShardStream::WriteHeader(const std::string& bytes) {
  grpc::Slice slice(bytes);  // copied: headers are small
  grpc::ByteBuffer buffer(&slice, 1);
  // A header is followed by its data (or the next header): let gRPC send
  // them together.
  return writer_->Write(buffer, grpc::WriteOptions().set_buffer_hint());
}

bool ShardStream::WriteData(const char* data, size_t n) {
  const std::string framing = DataFieldFraming(n);
  {
    std::lock_guard<std::mutex> lock(tracker_->mu);
    ++tracker_->outstanding;
  }
  grpc::Slice slices[2] = {
      grpc::Slice(framing.data(), framing.size()),
      // Not copied: gRPC reads the caller's bytes when it sends them and
      // calls Released when it lets go of them.
      grpc::Slice(const_cast<char*>(data), n, &ShardStream::Released, tracker_),
  };
  grpc::ByteBuffer buffer(slices, 2);
  // Small tensors' data travels with what follows; big chunks go at once.
  grpc::WriteOptions options;
  if (n < kCoalesceBelowBytes) options.set_buffer_hint();
  return writer_->Write(buffer, options);
}

bool ShardStream::WriteData(absl::Span<const absl::string_view> pieces) {
  size_t n = 0;
  for (absl::string_view p : pieces) n += p.size();
  const std::string framing = DataFieldFraming(n);
  std::vector<grpc::Slice> slices;
  slices.reserve(pieces.size() + 1);
  slices.emplace_back(framing.data(), framing.size());
  {
    std::lock_guard<std::mutex> lock(tracker_->mu);
    tracker_->outstanding += static_cast<int64_t>(pieces.size());
  }
  for (absl::string_view p : pieces) {
    slices.emplace_back(const_cast<char*>(p.data()), p.size(), &ShardStream::Released, tracker_);
  }
  grpc::ByteBuffer buffer(slices.data(), slices.size());
  grpc::WriteOptions options;
  if (n < kCoalesceBelowBytes) options.set_buffer_hint();
  return writer_->Write(buffer, options);
}

bool ShardStream::WritesDone() { return writer_->WritesDone(); }

grpc::Status ShardStream::Finish() {
  grpc::Status status = writer_->Finish();
  writer_.reset();
  WaitForSlices(/*call_ended=*/true);
  return status;
}

void ShardStream::Released(void* p) {
  auto* tracker = static_cast<Tracker*>(p);
  bool last_owner = false;
  {
    std::lock_guard<std::mutex> lock(tracker->mu);
    if (--tracker->outstanding == 0) {
      if (tracker->detached) {
        last_owner = true;
      } else {
        tracker->released.notify_all();
      }
    }
  }
  if (last_owner) delete tracker;
}

// Waits for every slice (bounded once the call has ended: a slice of a
// failed write can stay with gRPC's call until it is freed), then lets go
// of the tracker.
void ShardStream::WaitForSlices(bool call_ended) {
  if (tracker_ == nullptr) return;
  std::unique_lock<std::mutex> lock(tracker_->mu);
  auto done = [this] { return tracker_->outstanding == 0; };
  if (call_ended) {
    tracker_->released.wait_for(lock, std::chrono::milliseconds(kReleaseWaitMs), done);
  } else {
    tracker_->released.wait(lock, done);
  }
  if (tracker_->outstanding == 0) {
    lock.unlock();
    delete tracker_;
  } else {
    tracker_->detached = true;  // the last Released deletes it
    lock.unlock();
  }
  tracker_ = nullptr;
}

}  // namespace internal
}  // namespace cairn
