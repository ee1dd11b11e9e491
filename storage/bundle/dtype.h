// TensorFlow element types as stored in checkpoints (the DataType enum of
// tensorflow/core/framework/types.proto; spec §10).
#ifndef CAIRN_STORAGE_BUNDLE_DTYPE_H_
#define CAIRN_STORAGE_BUNDLE_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace cairn {

enum class DataType : int32_t {
  kInvalid = 0,
  kFloat = 1,
  kDouble = 2,
  kInt32 = 3,
  kUint8 = 4,
  kInt16 = 5,
  kInt8 = 6,
  kString = 7,
  kComplex64 = 8,
  kInt64 = 9,
  kBool = 10,
  kQint8 = 11,
  kQuint8 = 12,
  kQint32 = 13,
  kBfloat16 = 14,
  kQint16 = 15,
  kQuint16 = 16,
  kUint16 = 17,
  kComplex128 = 18,
  kHalf = 19,
  kResource = 20,
  kVariant = 21,
  kUint32 = 22,
  kUint64 = 23,
  kFloat8E5M2 = 24,
  kFloat8E4M3FN = 25,
};

// Bytes per element in a data file; 0 for types without a fixed size
// (string, variant, resource, invalid or unknown values).
size_t DataTypeSize(DataType dtype);

// Size of one endian-swappable unit: equals DataTypeSize except for complex
// types, whose real and imaginary parts are swapped separately.
size_t DataTypeSwapUnit(DataType dtype);

// True if `value` names a DataType this library can store and read
// (every fixed-size type above, plus string).
bool IsStorableDataType(int32_t value);

// TensorFlow's Python name: "float32", "bfloat16", "string", ...; for an
// unknown value, "dtype(N)".
std::string DataTypeName(DataType dtype);

// Inverse of DataTypeName for the storable types. Returns false if unknown.
bool DataTypeFromName(absl::string_view name, DataType* out);

}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_DTYPE_H_
