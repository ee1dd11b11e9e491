// The client side of ShardWriter.SaveShard, sending tensor bytes straight
// from the caller's memory. A data chunk goes to gRPC as a slice over the
// caller's buffer plus a few bytes of protobuf framing (the wire form of a
// SaveShardMessage holding `data`), so its bytes are copied only by the
// kernel: not into a message, not into a serialization buffer, and no 4 MiB
// buffer is allocated (and faulted in) per chunk. The writer receives the
// same messages as from the generated stub.
//
// The caller's memory must stay unchanged until Finish() returns: Finish
// (and the destructor) wait until gRPC has released every slice — on a
// broken stream at most kReleaseWaitMs after the call ended (gRPC then
// sends nothing more; a slice it still holds only waits to be freed, and
// its release callback no longer touches the stream).
#ifndef CAIRN_CLIENT_INTERNAL_SHARD_STREAM_H_
#define CAIRN_CLIENT_INTERNAL_SHARD_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/client.h"
#include "proto/rpc/rpc_util.h"
#include "proto/cairn.pb.h"

namespace cairn {
namespace internal {

// The bytes that precede `n` bytes of data in a serialized SaveShardMessage
// whose `data` field is set (tag, then the length as a varint).
std::string DataFieldFraming(size_t n);
// A SaveShardMessage whose `batch` is `batch`, serialized (protobuf's bytes).
std::string SerializeBatchMessage(const v1::TensorBatch& batch);

// Tensors smaller than kBatchTensorBelow (data, or string values) go in
// TensorBatches to a writer that takes them; a batch closes once it holds
// kBatchBytes or kBatchTensors. Per-message costs (a header and a data
// message, each a gRPC write and read) are then paid per batch.
constexpr size_t kBatchTensorBelow = 64 << 10;
constexpr size_t kBatchBytes = 1 << 20;
constexpr int kBatchTensors = rpc::kMaxBatchTensors;
bool Batchable(const SaveTensor& t);
// What `t` adds to a batch: its data, name and string values (with framing).
size_t BatchedBytes(const SaveTensor& t);
void FillTensorHeader(const SaveTensor& t, v1::TensorHeader* out);

class ShardStream {
 public:
  // `ctx` and `response` must outlive the stream.
  ShardStream(const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* ctx,
              v1::SaveShardResponse* response);
  ~ShardStream();
  ShardStream(const ShardStream&) = delete;
  ShardStream& operator=(const ShardStream&) = delete;

  // Each returns false once the stream is broken (Finish tells why).
  bool Write(const v1::SaveShardMessage& msg);
  // A SaveShardMessage holding `batch`: the caller may reuse one TensorBatch
  // (Clear keeps its headers' memory for the next batch).
  bool WriteBatch(const v1::TensorBatch& batch);
  bool WriteData(const char* data, size_t n);
  // One data message of several tensors' bytes, back to back (a batch's).
  bool WriteData(absl::Span<const absl::string_view> pieces);
  bool WritesDone();
  // The call's status; the caller's memory is no longer referenced after.
  grpc::Status Finish();

 private:
  bool WriteHeader(const std::string& bytes);

  // Counts the slices over caller memory gRPC still holds. Owned by the
  // stream, or, once the stream gave up waiting (detached), by the last
  // release callback.
  struct Tracker {
    std::mutex mu;
    std::condition_variable released;
    int64_t outstanding = 0;  // GUARDED_BY(mu)
    bool detached = false;    // GUARDED_BY(mu)
  };
  static constexpr int64_t kReleaseWaitMs = 5000;
  static void Released(void* tracker);
  void WaitForSlices(bool call_ended);

  grpc::internal::RpcMethod method_;
  std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer_;
  Tracker* tracker_;
};

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_CLIENT_INTERNAL_SHARD_STREAM_H_
