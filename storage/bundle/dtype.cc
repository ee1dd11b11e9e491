#include "storage/bundle/dtype.h"

#include "absl/strings/str_cat.h"

namespace cairn {
namespace {

struct DTypeInfo {
  DataType dtype;
  size_t size;
  size_t swap_unit;
  const char* name;
};

// Element sizes: TensorFlow's in-memory sizes, copied verbatim to data files
// (spec §10). Quantized types are stored like their integer counterparts.
constexpr DTypeInfo kTypes[] = {
    {DataType::kFloat, 4, 4, "float32"},      {DataType::kDouble, 8, 8, "float64"},
    {DataType::kInt32, 4, 4, "int32"},        {DataType::kUint8, 1, 1, "uint8"},
    {DataType::kInt16, 2, 2, "int16"},        {DataType::kInt8, 1, 1, "int8"},
    {DataType::kString, 0, 0, "string"},      {DataType::kComplex64, 8, 4, "complex64"},
    {DataType::kInt64, 8, 8, "int64"},        {DataType::kBool, 1, 1, "bool"},
    {DataType::kQint8, 1, 1, "qint8"},        {DataType::kQuint8, 1, 1, "quint8"},
    {DataType::kQint32, 4, 4, "qint32"},      {DataType::kBfloat16, 2, 2, "bfloat16"},
    {DataType::kQint16, 2, 2, "qint16"},      {DataType::kQuint16, 2, 2, "quint16"},
    {DataType::kUint16, 2, 2, "uint16"},      {DataType::kComplex128, 16, 8, "complex128"},
    {DataType::kHalf, 2, 2, "float16"},       {DataType::kUint32, 4, 4, "uint32"},
    {DataType::kUint64, 8, 8, "uint64"},      {DataType::kFloat8E5M2, 1, 1, "float8_e5m2"},
    {DataType::kFloat8E4M3FN, 1, 1, "float8_e4m3fn"},
};

const DTypeInfo* Find(DataType dtype) {
  for (const auto& info : kTypes) {
    if (info.dtype == dtype) return &info;
  }
  return nullptr;
}

}  // namespace

size_t DataTypeSize(DataType dtype) {
  const DTypeInfo* info = Find(dtype);
  return info ? info->size : 0;
}

size_t DataTypeSwapUnit(DataType dtype) {
  const DTypeInfo* info = Find(dtype);
  return info ? info->swap_unit : 0;
}

bool IsStorableDataType(int32_t value) {
  const DTypeInfo* info = Find(static_cast<DataType>(value));
  return info != nullptr;
}

std::string DataTypeName(DataType dtype) {
  if (const DTypeInfo* info = Find(dtype)) return info->name;
  switch (dtype) {
    case DataType::kResource:
      return "resource";
    case DataType::kVariant:
      return "variant";
    default:
      return absl::StrCat("dtype(", static_cast<int32_t>(dtype), ")");
  }
}

bool DataTypeFromName(absl::string_view name, DataType* out) {
  for (const auto& info : kTypes) {
    if (name == info.name) {
      *out = info.dtype;
      return true;
    }
  }
  return false;
}

}  // namespace cairn
