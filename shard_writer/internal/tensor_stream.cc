#include "shard_writer/internal/tensor_stream.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/cairn.pb.h"
#include "proto/rpc/rpc_util.h"
#include "shard_writer/internal/raw_message.h"
#include "storage/bundle/tensor.h"
#include "storage/bundle/tensor_slice.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {
namespace {

constexpr int kMaxRank = 64;
constexpr size_t kMaxNameBytes = 4096;

absl::Status BeginTensor(BundleWriter* writer, const v1::TensorHeader& t, bool* streaming) {
  if (t.name().empty() || t.name().size() > kMaxNameBytes || t.name()[0] == '\0') {
    return absl::InvalidArgumentError("tensor names must be 1 to 4096 bytes, not starting with NUL");
  }
  if (t.shape_size() > kMaxRank) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name(), "\": rank ",
                                                   t.shape_size(), " exceeds ", kMaxRank));
  }
  if (!IsStorableDataType(t.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name(), "\": unsupported dtype ",
                                                   t.dtype()));
  }
  const DataType dtype = static_cast<DataType>(t.dtype());
  std::vector<int64_t> shape(t.shape().begin(), t.shape().end());
  if (dtype == DataType::kString) {
    if (!t.slice().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("string tensor \"", t.name(),
                                                     "\" cannot be saved by slices"));
    }
    std::vector<std::string> values(t.string_values().begin(), t.string_values().end());
    *streaming = false;
    return writer->AddString(t.name(), shape, values);
  }
  *streaming = true;
  if (t.slice().empty()) return writer->BeginTensor(t.name(), dtype, shape);
  ASSIGN_OR_RETURN(TensorSlice slice, TensorSlice::Parse(t.slice()));
  return writer->BeginSlice(t.name(), shape, slice, dtype);
}

}  // namespace

metrics::CounterMetric& WriterBytesReceived() {
  static auto& c = metrics::Counter("cairn_writer_bytes_received_total", "Tensor bytes received from clients.");
  return c;
}

metrics::CounterMetric& WriterBatchedTensors() {
  static auto& c = metrics::Counter("cairn_writer_batched_tensors_total",
                                    "Tensors received in batches (small tensors, several per message).");
  return c;
}

absl::StatusOr<int64_t> ReadTensors(grpc::ServerContext* ctx,
                                    grpc::ServerReader<grpc::ByteBuffer>* reader,
                                    BundleWriter* writer, const TensorStreamOptions& options,
                                    const std::string& what) {
  grpc::ByteBuffer buffer;
  ReceivedMessage in;
  const v1::SaveShardMessage& msg = in.message;
  bool in_tensor = false;
  int64_t tensors = 0;
  uint64_t received = 0;
  // The headers of a batch whose tensors have not begun yet: the next
  // data bytes fill the tensor in progress, then begin the next of these.
  v1::TensorBatch batch;
  int next_in_batch = 0;
  auto batch_pending = [&] { return next_in_batch < batch.tensors_size(); };
  // Past the finished tensor in progress to the next batched one that
  // needs data (string and empty tensors need none).
  auto advance = [&]() -> absl::Status {
    while (batch_pending() && (!in_tensor || writer->tensor_bytes_left() == 0)) {
      if (in_tensor) RETURN_IF_ERROR(writer->EndTensor());
      bool streaming = false;
      RETURN_IF_ERROR(BeginTensor(writer, batch.tensors(next_in_batch++), &streaming));
      in_tensor = streaming;
      ++tensors;
    }
    return absl::OkStatus();
  };
  std::vector<absl::string_view> pieces;
  while (reader->Read(&buffer)) {
    RETURN_IF_ERROR(ParseReceived(&buffer, &in));
    const auto kind = in.is_data    ? v1::SaveShardMessage::kData
                      : in.is_batch ? v1::SaveShardMessage::kBatch
                                    : msg.kind_case();
    if (batch_pending() && kind != v1::SaveShardMessage::kData) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a new tensor header before the data of batched tensor \"",
          batch.tensors(next_in_batch).name(), "\""));
    }
    switch (kind) {
      case v1::SaveShardMessage::kTensor: {
        if (in_tensor) RETURN_IF_ERROR(writer->EndTensor());
        bool streaming = false;
        RETURN_IF_ERROR(BeginTensor(writer, msg.tensor(), &streaming));
        in_tensor = streaming;
        ++tensors;
        break;
      }
      case v1::SaveShardMessage::kBatch: {
        if (!options.accept_batches) {
          return absl::InvalidArgumentError("unexpected message in a SaveShard stream");
        }
        v1::TensorBatch* received_batch = in.is_batch ? &in.batch : in.message.mutable_batch();
        if (received_batch->tensors_size() > rpc::kMaxBatchTensors) {
          return absl::InvalidArgumentError(absl::StrCat("a tensor batch of ", received_batch->tensors_size(),
                                                         " tensors (at most ", rpc::kMaxBatchTensors, ")"));
        }
        if (in_tensor) RETURN_IF_ERROR(writer->EndTensor());
        in_tensor = false;
        // Swapped, not moved: `in` parses the next batch into this one's
        // headers, reusing their memory.
        batch.Swap(received_batch);
        next_in_batch = 0;
        WriterBatchedTensors().Add(batch.tensors_size());
        RETURN_IF_ERROR(advance());
        break;
      }
      case v1::SaveShardMessage::kData: {
        if (!in_tensor) return absl::InvalidArgumentError("data before any tensor header");
        const uint64_t n = in.is_data ? in.data_size : msg.data().size();
        received += n;
        if (received > options.max_shard_bytes) {
          return absl::ResourceExhaustedError(absl::StrCat(
              what, ": more than ", options.max_shard_bytes,
              " bytes (this writer's --max-shard-bytes); the shard was not saved"));
        }
        if (!in.is_data) in.data.assign(1, msg.data());
        if (!batch_pending()) {
          RETURN_IF_ERROR(writer->AppendData(absl::MakeConstSpan(in.data)));
        } else {
          // Cut the bytes at tensor boundaries. Past the batch's last
          // tensor they go to it, which refuses the excess.
          for (absl::string_view rest : in.data) {
            while (!rest.empty()) {
              if (!in_tensor) return absl::InvalidArgumentError("data before any tensor header");
              const uint64_t take = batch_pending() ? std::min<uint64_t>(rest.size(), writer->tensor_bytes_left())
                                                    : rest.size();
              pieces.assign(1, rest.substr(0, take));
              RETURN_IF_ERROR(writer->AppendData(absl::MakeConstSpan(pieces)));
              rest.remove_prefix(take);
              RETURN_IF_ERROR(advance());
            }
          }
        }
        WriterBytesReceived().Add(static_cast<double>(n));
        break;
      }
      default:
        return absl::InvalidArgumentError("unexpected message in a SaveShard stream");
    }
  }
  if (ctx->IsCancelled()) return absl::CancelledError(absl::StrCat(what, ": client went away"));
  if (batch_pending()) {
    return absl::InvalidArgumentError(absl::StrCat("the stream ended before the data of batched tensor \"",
                                                   batch.tensors(next_in_batch).name(), "\""));
  }
  if (in_tensor) RETURN_IF_ERROR(writer->EndTensor());
  return tensors;
}

}  // namespace internal
}  // namespace cairn
