#include "shard_writer/internal/raw_message.h"

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/proto_buffer_reader.h>

namespace cairn {
namespace internal {
namespace {

// SaveShardMessage.data is field 3 and .batch field 4, both length-delimited
// (proto/cairn.proto).
constexpr uint8_t kDataTag = (3 << 3) | 2;
constexpr uint8_t kBatchTag = (4 << 3) | 2;

// Reads bytes across slices.
class SliceCursor {
 public:
  explicit SliceCursor(const std::vector<grpc::Slice>& slices) : slices_(slices) {}
  bool Next(uint8_t* b) {
    while (i_ < slices_.size() && off_ == slices_[i_].size()) {
      ++i_;
      off_ = 0;
    }
    if (i_ == slices_.size()) return false;
    *b = slices_[i_].begin()[off_++];
    return true;
  }
  // Appends views of everything after the cursor to `out`; returns its size.
  uint64_t Rest(std::vector<absl::string_view>* out) const {
    uint64_t n = 0;
    for (size_t i = i_; i < slices_.size(); ++i) {
      const size_t from = i == i_ ? off_ : 0;
      if (slices_[i].size() == from) continue;
      out->emplace_back(reinterpret_cast<const char*>(slices_[i].begin()) + from,
                        slices_[i].size() - from);
      n += slices_[i].size() - from;
    }
    return n;
  }

 private:
  const std::vector<grpc::Slice>& slices_;
  size_t i_ = 0;
  size_t off_ = 0;
};

}  // namespace

absl::Status ParseReceived(grpc::ByteBuffer* buffer, ReceivedMessage* out) {
  out->is_data = false;
  out->is_batch = false;
  out->data.clear();
  out->data_size = 0;
  out->slices.clear();
  out->message.Clear();
  if (buffer->Dump(&out->slices).ok()) {  // references, not copies
    SliceCursor cursor(out->slices);
    uint8_t b;
    if (cursor.Next(&b) && (b == kDataTag || b == kBatchTag)) {
      const bool batch = b == kBatchTag;
      uint64_t len = 0;
      int shift = 0;
      bool ok = false;
      while (shift < 64 && cursor.Next(&b)) {
        len |= static_cast<uint64_t>(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80)) {
          ok = true;
          break;
        }
      }
      // Exactly the one field, to the end: anything else (more fields after
      // it) takes the general path below, which parses as protobuf does.
      if (ok) {
        std::vector<absl::string_view> rest;
        if (cursor.Rest(&rest) == len) {
          buffer->Clear();
          if (!batch) {
            out->is_data = true;
            out->data = std::move(rest);
            out->data_size = len;
            return absl::OkStatus();
          }
          out->scratch.clear();
          for (absl::string_view piece : rest) out->scratch.append(piece.data(), piece.size());
          out->slices.clear();
          if (!out->batch.ParseFromString(out->scratch)) {
            return absl::InvalidArgumentError("a SaveShard stream message does not parse");
          }
          out->is_batch = true;
          return absl::OkStatus();
        }
      }
    }
  }
  out->slices.clear();
  grpc::Status s = grpc::GenericDeserialize<grpc::ProtoBufferReader, v1::SaveShardMessage>(
      buffer, &out->message);
  if (!s.ok()) return absl::InvalidArgumentError("a SaveShard stream message does not parse");
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace cairn
