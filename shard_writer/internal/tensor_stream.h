// The tensors of a SaveShard stream, after its header, into a bundle: each
// TensorHeader and the data after it, or each TensorBatch (its tensors'
// headers) and the data after it, cut at tensor boundaries
// (proto/cairn.proto). Every header is checked before its tensor begins;
// nothing but what the messages describe reaches the BundleWriter.
#ifndef CAIRN_SHARD_WRITER_INTERNAL_TENSOR_STREAM_H_
#define CAIRN_SHARD_WRITER_INTERNAL_TENSOR_STREAM_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/sync_stream.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "observability/metrics.h"
#include "storage/bundle/bundle_writer.h"

namespace cairn {
namespace internal {

struct TensorStreamOptions {
  uint64_t max_shard_bytes = 0;  // more tensor bytes than this: ResourceExhausted
  bool accept_batches = true;    // else a TensorBatch is an unexpected message
};

// Reads tensor messages from `reader` until the client half-closes and
// ends the last tensor; returns how many tensors were begun. `what` names
// the shard in errors. Cancelled if the client went away.
absl::StatusOr<int64_t> ReadTensors(grpc::ServerContext* ctx,
                                    grpc::ServerReader<grpc::ByteBuffer>* reader,
                                    BundleWriter* writer, const TensorStreamOptions& options,
                                    const std::string& what);

// The writer's counters of what streams brought.
metrics::CounterMetric& WriterBytesReceived();
metrics::CounterMetric& WriterBatchedTensors();

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_SHARD_WRITER_INTERNAL_TENSOR_STREAM_H_
