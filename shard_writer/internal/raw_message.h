// Reading SaveShardMessages straight from gRPC's received bytes, so that a
// data message's tensor bytes are never copied into a protobuf string: the
// writer hands the received slices to the bundle writer, which copies them
// once, into its (O_DIRECT) staging buffer, computing the CRC there.
//
//   grpc::ByteBuffer buffer;
//   while (reader->Read(&buffer)) {
//     ReceivedMessage m;
//     RETURN_IF_ERROR(ParseReceived(&buffer, &m));
//     if (m.is_data) for (absl::string_view piece : m.data) Append(piece);
//     else Handle(m.message);
//   }
#ifndef CAIRN_SHARD_WRITER_INTERNAL_RAW_MESSAGE_H_
#define CAIRN_SHARD_WRITER_INTERNAL_RAW_MESSAGE_H_

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "proto/cairn.pb.h"

namespace cairn {
namespace internal {

struct ReceivedMessage {
  // True for a message holding just the `data` field (as every client sends
  // it): its bytes are `data`, views into `slices`, in order. Otherwise the
  // message is parsed whole into `message` (headers, and any other encoding
  // of a data message: then `message.data()` holds the bytes).
  bool is_data = false;
  std::vector<absl::string_view> data;
  uint64_t data_size = 0;
  std::vector<grpc::Slice> slices;  // keeps the views alive
  // True for a message holding just the `batch` field (as every client
  // sends it): parsed into `batch`, whose headers' memory the next batch
  // reuses when the caller swaps its own TensorBatch with it.
  bool is_batch = false;
  v1::TensorBatch batch;
  std::string scratch;
  v1::SaveShardMessage message;
};

// Fills `out` from `buffer` (which is left empty). InvalidArgument if the
// bytes are not a SaveShardMessage.
absl::Status ParseReceived(grpc::ByteBuffer* buffer, ReceivedMessage* out);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_SHARD_WRITER_INTERNAL_RAW_MESSAGE_H_
