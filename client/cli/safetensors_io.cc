#include "client/cli/safetensors_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/internal/validate.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/bundle/bundle_writer.h"
#include "storage/bundle/safetensors.h"
#include "storage/status_macros.h"
#include "storage/storage.h"

namespace cairn {
namespace cli {
namespace {

constexpr char kSliceMetadataPrefix[] = "cairn.slice.";

absl::Status ErrnoError(int err, const std::string& what) {
  const std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

// Closes a file descriptor on scope exit.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

// A storage backend holding `uri` (a prefix or a file), and its name there.
struct Located {
  std::unique_ptr<Storage> storage;
  std::string name;
};

absl::StatusOr<Located> Locate(const std::string& uri, const StorageOptions& options) {
  ASSIGN_OR_RETURN(SplitPrefix split, SplitPrefixUri(uri));
  Located out;
  ASSIGN_OR_RETURN(out.storage, OpenStorage(split.root_uri, options));
  out.name = std::move(split.prefix);
  return out;
}

uint64_t DataBytes(const Tensor& t) {
  if (t.dtype != DataType::kString) return t.data.size();
  uint64_t n = 0;
  for (const std::string& s : t.strings) n += s.size();
  return n;
}

// The restored tensor is a proper part of its full tensor.
bool IsPartial(const RestoredTensor& r) {
  return r.slice.has_value() && !r.slice->CoversAll(r.full_shape);
}

absl::StatusOr<RestoreOutputSummary> WriteSafetensors(const RestoredTensors& tensors,
                                                      const std::string& dst,
                                                      const RestoreOutputOptions& options) {
  RestoreOutputSummary summary;
  std::vector<SafetensorsTensor> infos;
  std::map<std::string, std::string> metadata;
  for (const auto& [name, r] : tensors) {
    ASSIGN_OR_RETURN(bool keep, KeepForSafetensors(name, r.tensor.dtype, options.strict, options.warn));
    if (!keep) {
      ++summary.skipped;
      continue;
    }
    SafetensorsTensor info;
    info.name = name;
    info.dtype = r.tensor.dtype;
    info.shape = r.tensor.shape;
    infos.push_back(std::move(info));
    if (IsPartial(r)) metadata[SliceMetadataKey(name)] = FormatShapeAndSlice(r.full_shape, *r.slice);
  }
  ASSIGN_OR_RETURN(std::string prefix, BuildSafetensorsPrefix(&infos, metadata));
  ASSIGN_OR_RETURN(Located out, Locate(dst, options.storage));
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, out.storage->NewWritableFile(out.name));
  absl::Status s = file->Append(prefix);
  for (size_t i = 0; s.ok() && i < infos.size(); ++i) {
    const Tensor& t = tensors.at(infos[i].name).tensor;
    if (t.data.size() != infos[i].end - infos[i].begin) {
      s = absl::InternalError(absl::StrCat("tensor \"", infos[i].name, "\": holds ", t.data.size(),
                                           " bytes, its shape needs ",
                                           infos[i].end - infos[i].begin));
      break;
    }
    s = file->Append(t.data.view());
    summary.bytes += t.data.size();
    ++summary.tensors;
  }
  if (s.ok()) s = file->Close();
  RETURN_IF_ERROR(s);  // an un-closed file is abandoned when destroyed
  return summary;
}

absl::StatusOr<RestoreOutputSummary> WriteBundle(const RestoredTensors& tensors,
                                                 const std::string& dst,
                                                 const RestoreOutputOptions& options) {
  RestoreOutputSummary summary;
  ASSIGN_OR_RETURN(Located out, Locate(dst, options.storage));
  ASSIGN_OR_RETURN(std::unique_ptr<BundleWriter> writer,
                   BundleWriter::Create(out.storage.get(), out.name));
  for (const auto& [name, r] : tensors) {
    const Tensor& t = r.tensor;
    if (t.dtype == DataType::kString) {
      RETURN_IF_ERROR(writer->AddString(name, t.shape, t.strings));
    } else if (IsPartial(r)) {
      RETURN_IF_ERROR(writer->AddSlice(name, r.full_shape, *r.slice, t.dtype, t.data.view()));
    } else {
      RETURN_IF_ERROR(writer->Add(name, t.dtype, t.shape, t.data.view()));
    }
    summary.bytes += DataBytes(t);
    ++summary.tensors;
  }
  RETURN_IF_ERROR(writer->Finish());
  return summary;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsSource>> SafetensorsSource::Open(
    const std::string& path_or_uri, const WarnFn& warn) {
  std::string path = path_or_uri;
  if (absl::StartsWith(path, "file://")) path = path.substr(7);
  if (absl::StrContains(path, "://")) {
    return absl::UnimplementedError(
        absl::StrCat(path_or_uri, ": only local safetensors files can be saved"));
  }
  FdCloser fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.fd < 0) return ErrnoError(errno, absl::StrCat("cannot open ", path));
  struct stat st;
  if (::fstat(fd.fd, &st) != 0) return ErrnoError(errno, absl::StrCat("cannot stat ", path));
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", size, " bytes is too short for a safetensors file (no header length)"));
  }
  std::unique_ptr<SafetensorsSource> src(new SafetensorsSource());
  src->map_ = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (src->map_ == MAP_FAILED) {
    src->map_ = nullptr;
    return ErrnoError(errno, absl::StrCat("cannot map ", path));
  }
  src->map_size_ = static_cast<size_t>(size);
  ::madvise(src->map_, src->map_size_, MADV_SEQUENTIAL);
  const char* base = static_cast<const char*>(src->map_);

  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(base[i]);
  if (n > size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": safetensors header length ", n,
                                                   " exceeds the ", size - 8,
                                                   " bytes after the length"));
  }
  absl::StatusOr<SafetensorsHeader> header =
      ParseSafetensorsHeader(absl::string_view(base + 8, static_cast<size_t>(n)), size - 8 - n);
  if (!header.ok()) {
    return absl::Status(header.status().code(),
                        absl::StrCat(path, ": ", header.status().message()));
  }
  const char* data = base + 8 + n;

  for (const SafetensorsTensor& t : header->tensors) {
    SaveTensor out;
    out.name = t.name;
    out.dtype = t.dtype;
    out.shape = t.shape;
    out.data = absl::string_view(data + t.begin, static_cast<size_t>(t.end - t.begin));
    auto meta = header->metadata.find(SliceMetadataKey(t.name));
    if (meta != header->metadata.end()) {
      std::vector<int64_t> full_shape;
      TensorSlice slice;
      absl::Status s = ParseShapeAndSlice(meta->second, &full_shape, &slice);
      if (!s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": metadata ", meta->first, ": ", s.message()));
      }
      if (slice.SliceShape(full_shape) != t.shape) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": tensor \"", t.name, "\" has shape ", ShapeString(t.shape),
            " but its slice metadata \"", meta->second, "\" needs ",
            ShapeString(slice.SliceShape(full_shape))));
      }
      out.shape = std::move(full_shape);
      out.slice = std::move(slice);
    }
    src->data_bytes_ += out.data.size();
    src->tensors_.push_back(std::move(out));
  }
  for (const auto& meta : header->metadata) {
    if (!absl::StartsWith(meta.first, kSliceMetadataPrefix)) {
      if (warn) warn(absl::StrCat("metadata \"", meta.first, "\" is not saved: checkpoints have no place for it"));
      continue;
    }
    const std::string name = meta.first.substr(sizeof(kSliceMetadataPrefix) - 1);
    bool found = false;
    for (const SafetensorsTensor& t : header->tensors) found = found || t.name == name;
    if (!found) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": metadata \"", meta.first, "\" names no tensor in the file"));
    }
  }
  return src;
}

SafetensorsSource::~SafetensorsSource() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

bool IsSafetensorsPath(const std::string& dst) { return absl::EndsWith(dst, ".safetensors"); }

absl::StatusOr<RestoreOutputSummary> WriteRestoredTensors(const RestoredTensors& tensors,
                                                          const std::string& dst,
                                                          const RestoreOutputOptions& options) {
  absl::StatusOr<RestoreOutputSummary> summary =
      IsSafetensorsPath(dst) ? WriteSafetensors(tensors, dst, options) : WriteBundle(tensors, dst, options);
  if (!summary.ok() && !absl::StrContains(summary.status().message(), dst)) {
    return absl::Status(summary.status().code(),
                        absl::StrCat("writing ", dst, ": ", summary.status().message()));
  }
  return summary;
}

}  // namespace cli
}  // namespace cairn
