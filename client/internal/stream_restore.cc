#include "client/internal/stream_restore.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/internal/progress.h"
#include "client/internal/restore_plan.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/bundle/crc32c.h"
#include "storage/bundle/safetensors.h"
#include "storage/status_macros.h"
#include "storage/storage.h"

namespace cairn {
namespace internal {
namespace {

// Bytes moved per step of a tensor copy: per thread, at most one window is
// mapped (local sources) or buffered (remote ones).
constexpr size_t kWindow = 8 << 20;

absl::Status ErrnoError(const std::string& what, int err) {
  // The code as storage reports it: a full disk is ResourceExhausted, a
  // missing or forbidden directory NotFound or PermissionDenied.
  return absl::Status(ErrnoStatus("", "", err).code(), absl::StrCat(what, ": ", std::strerror(err)));
}

// The local directory `root_uri` names, or "" for remote storage.
std::string LocalRoot(const std::string& root_uri) {
  if (absl::StartsWith(root_uri, "file://")) return root_uri.substr(7);
  if (absl::StrContains(root_uri, "://")) return "";
  return root_uri;
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

absl::Status PwriteAll(int fd, const char* p, size_t n, uint64_t off, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return ErrnoError(absl::StrCat("writing ", path), w < 0 ? errno : EIO);
    p += w;
    n -= static_cast<size_t>(w);
    off += static_cast<uint64_t>(w);
  }
  return absl::OkStatus();
}

// Copies [src_off, src_off+n) of `src` to `dst_off` of `dst` in the kernel;
// false if copy_file_range cannot do it here (then the caller writes the
// bytes itself).
bool CopyRange(int src, uint64_t src_off, int dst, uint64_t dst_off, size_t n) {
  loff_t in = static_cast<loff_t>(src_off), out = static_cast<loff_t>(dst_off);
  while (n > 0) {
    const ssize_t c = ::copy_file_range(src, &in, dst, &out, n, 0);
    if (c < 0 && errno == EINTR) continue;
    if (c <= 0) return false;
    n -= static_cast<size_t>(c);
  }
  return true;
}

// One tensor of the output: where its bytes come from and go.
struct Job {
  RestoreItem item;
  uint64_t out_offset = 0;  // in the output file
};

class Streamer {
 public:
  Streamer(const BundleReader& reader, Storage* storage, std::string local_root, int out_fd,
           std::string out_path, ProgressCounter* progress)
      : reader_(reader), storage_(storage), local_root_(std::move(local_root)), out_fd_(out_fd),
        out_path_(std::move(out_path)), progress_(progress) {}

  absl::Status Run(const Job& job, std::string* buffer) {
    const RestoreItem& item = job.item;
    const BundleEntry& e = item.entry;
    const bool whole = !e.is_sliced() && (!item.slice || item.slice->CoversAll(e.shape));
    if (whole && !reader_.big_endian() && DataTypeSize(e.data_type()) > 0 &&
        static_cast<uint64_t>(e.size) == item.cost && e.offset >= 0 && e.shard_id >= 0 &&
        e.shard_id < reader_.num_shards()) {
      return CopyWhole(e, job.out_offset, buffer);
    }
    // Cut or assembled: through the reader, in memory (that tensor only).
    ASSIGN_OR_RETURN(Tensor t, item.slice ? reader_.ReadSlice(e.key, *item.slice) : reader_.ReadTensor(e.key));
    if (t.data.size() != item.cost) {
      return absl::InternalError(absl::StrCat("tensor \"", e.key, "\": read ", t.data.size(),
                                              " bytes, its shape needs ", item.cost));
    }
    RETURN_IF_ERROR(PwriteAll(out_fd_, t.data.data(), t.data.size(), job.out_offset, out_path_));
    progress_->Add(t.data.size());
    return absl::OkStatus();
  }

 private:
  absl::Status CopyWhole(const BundleEntry& e, uint64_t out_offset, std::string* buffer) {
    const std::string name = DataFileName(reader_.prefix(), e.shard_id, reader_.num_shards());
    ASSIGN_OR_RETURN(std::unique_ptr<ReadableFile> file, storage_->NewReadableFile(name));
    const uint64_t offset = static_cast<uint64_t>(e.offset), size = static_cast<uint64_t>(e.size);
    auto corrupt = [&](absl::string_view what) {
      return absl::DataLossError(absl::StrCat("tensor \"", e.key, "\" in ", file->name(),
                                              " at offset ", e.offset, ": ", what));
    };
    if (offset + size > file->Size()) {
      return corrupt(absl::StrCat("entry of ", size, " bytes runs past the end of the ",
                                  file->Size(), "-byte data file"));
    }
    int src = -1;
    std::unique_ptr<Fd> src_fd;
    if (!local_root_.empty()) {
      src_fd = std::make_unique<Fd>(::open(JoinPath(local_root_, name).c_str(), O_RDONLY | O_CLOEXEC));
      src = src_fd->fd;  // -1: read through the storage API instead
    }
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    uint32_t crc = 0;
    for (uint64_t done = 0; done < size;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kWindow, size - done));
      const uint64_t at = offset + done;
      bool copied = false;
      if (src >= 0) {
        // Map the window (page-aligned), checksum it from the page cache,
        // then let the kernel copy it: no copy through user memory.
        const uint64_t map_at = at / page * page;
        const size_t map_len = static_cast<size_t>(at - map_at) + n;
        void* m = ::mmap(nullptr, map_len, PROT_READ, MAP_SHARED | MAP_POPULATE, src,
                         static_cast<off_t>(map_at));
        if (m == MAP_FAILED) return ErrnoError(absl::StrCat("mapping ", file->name()), errno);
        const char* p = static_cast<const char*>(m) + (at - map_at);
        crc = crc32c::Extend(crc, p, n);
        copied = CopyRange(src, at, out_fd_, out_offset + done, n);
        absl::Status s = copied ? absl::OkStatus()
                                : PwriteAll(out_fd_, p, n, out_offset + done, out_path_);
        ::munmap(m, map_len);
        RETURN_IF_ERROR(s);
      } else {
        if (buffer->size() < n) buffer->resize(kWindow);
        RETURN_IF_ERROR(file->ReadAt(at, n, buffer->data()));
        crc = crc32c::Extend(crc, buffer->data(), n);
        RETURN_IF_ERROR(PwriteAll(out_fd_, buffer->data(), n, out_offset + done, out_path_));
      }
      // Start writeback now, so the final fsync has little left to wait for.
      ::sync_file_range(out_fd_, static_cast<off_t>(out_offset + done), static_cast<off_t>(n),
                        SYNC_FILE_RANGE_WRITE);
      done += n;
      progress_->Add(n);
    }
    if (crc != crc32c::Unmask(e.masked_crc32c)) return corrupt("checksum does not match");
    return absl::OkStatus();
  }

  const BundleReader& reader_;
  Storage* const storage_;
  const std::string local_root_;
  const int out_fd_;
  const std::string out_path_;
  ProgressCounter* const progress_;
};

// Creates the directories above `path`, as the storage API's writers do.
absl::Status MakeParentDirs(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) return ErrnoError(absl::StrCat("creating ", parent.string()), ec.value());
  return absl::OkStatus();
}

// A temporary name beside `path`.
std::string TempPath(const std::string& path) {
  std::random_device rd;
  return absl::StrCat(path, ".tmp-", ::getpid(), "-", rd());
}

absl::Status SyncDirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.fd < 0 || ::fsync(fd.fd) != 0) return ErrnoError(absl::StrCat("syncing ", dir), errno);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StreamRestoreSummary> StreamRestoreToSafetensors(
    absl::string_view prefix_uri, const RestoreRequest& request, const std::string& dst_path,
    const StreamRestoreOptions& options, const ProgressFn& progress_fn,
    const StorageOptions& storage_options) {
  ASSIGN_OR_RETURN(SplitPrefix split, SplitPrefixUri(prefix_uri));
  ASSIGN_OR_RETURN(std::unique_ptr<Storage> storage, OpenStorage(split.root_uri, storage_options));
  ASSIGN_OR_RETURN(std::unique_ptr<BundleReader> reader, BundleReader::Open(storage.get(), split.prefix));
  ASSIGN_OR_RETURN(std::vector<RestoreItem> items, PlanRestore(*reader, request, prefix_uri));

  // The header first: which tensors, in what order, at which offsets.
  StreamRestoreSummary summary;
  std::vector<SafetensorsTensor> infos;
  std::map<std::string, std::string> metadata;
  std::map<std::string, RestoreItem> by_name;
  for (RestoreItem& item : items) {
    const BundleEntry& e = item.entry;
    ASSIGN_OR_RETURN(bool keep, KeepForSafetensors(e.key, e.data_type(), options.strict, options.warn));
    if (!keep) {
      ++summary.skipped;
      continue;
    }
    SafetensorsTensor info;
    info.name = e.key;
    info.dtype = e.data_type();
    info.shape = item.slice ? item.slice->SliceShape(e.shape) : e.shape;
    if (item.slice && !item.slice->CoversAll(e.shape)) {
      metadata[SliceMetadataKey(e.key)] = FormatShapeAndSlice(e.shape, *item.slice);
    }
    infos.push_back(std::move(info));
    by_name[e.key] = std::move(item);
  }
  ASSIGN_OR_RETURN(std::string prefix, BuildSafetensorsPrefix(&infos, metadata));
  std::vector<Job> jobs;
  uint64_t total = 0;
  for (const SafetensorsTensor& info : infos) {
    Job job;
    job.item = std::move(by_name.at(info.name));
    job.out_offset = prefix.size() + info.begin;
    total += job.item.cost;
    jobs.push_back(std::move(job));
  }
  // Largest first, so the threads finish together.
  std::stable_sort(jobs.begin(), jobs.end(),
                   [](const Job& a, const Job& b) { return a.item.cost > b.item.cost; });

  RETURN_IF_ERROR(MakeParentDirs(dst_path));
  const std::string temp = TempPath(dst_path);
  Fd out(::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (out.fd < 0) return ErrnoError(absl::StrCat("creating ", temp), errno);
  struct RemoveUnlessPublished {
    const std::string& path;
    bool published = false;
    ~RemoveUnlessPublished() {
      if (!published) ::unlink(path.c_str());
    }
  } cleanup{temp};
  if (::ftruncate(out.fd, static_cast<off_t>(prefix.size() + total)) != 0) {
    return ErrnoError(absl::StrCat("sizing ", temp), errno);
  }
  RETURN_IF_ERROR(PwriteAll(out.fd, prefix.data(), prefix.size(), 0, temp));

  ProgressCounter progress(progress_fn, total);
  progress.Begin();
  Streamer streamer(*reader, storage.get(), LocalRoot(split.root_uri), out.fd, dst_path, &progress);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  absl::Status first_error;
  auto work = [&] {
    std::string buffer;  // remote sources only
    while (!failed.load(std::memory_order_relaxed)) {
      const size_t i = next.fetch_add(1);
      if (i >= jobs.size()) return;
      absl::Status s = streamer.Run(jobs[i], &buffer);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (first_error.ok()) first_error = s;
        failed.store(true);
        return;
      }
    }
  };
  const size_t num_threads = std::min<size_t>(static_cast<size_t>(std::max(options.threads, 1)), jobs.size());
  std::vector<std::thread> pool;
  for (size_t i = 1; i < num_threads; ++i) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  RETURN_IF_ERROR(first_error);

  if (::fsync(out.fd) != 0) return ErrnoError(absl::StrCat("syncing ", temp), errno);
  if (::rename(temp.c_str(), dst_path.c_str()) != 0) {
    return ErrnoError(absl::StrCat("renaming ", temp, " to ", dst_path), errno);
  }
  cleanup.published = true;
  RETURN_IF_ERROR(SyncDirOf(dst_path));
  progress.Finish();
  summary.tensors = static_cast<int64_t>(jobs.size());
  summary.bytes = total;
  return summary;
}

}  // namespace internal
}  // namespace cairn

namespace cairn {
namespace internal {
namespace {

// A stored entry whose CRC is checked as its file streams by.
struct Checked {
  BundleEntry entry;
  uint32_t crc = 0;
};

// A temporary file that is removed unless published.
struct TempFile {
  TempFile() = default;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string path;
  std::string final_path;
  int fd = -1;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!path.empty()) ::unlink(path.c_str());
  }
};

absl::Status CreateTemp(const std::string& final_path, uint64_t size, TempFile* out) {
  out->final_path = final_path;
  out->path = TempPath(final_path);
  out->fd = ::open(out->path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out->fd < 0) {
    out->path.clear();
    return ErrnoError(absl::StrCat("creating ", final_path), errno);
  }
  if (::ftruncate(out->fd, static_cast<off_t>(size)) != 0) {
    return ErrnoError(absl::StrCat("sizing ", final_path), errno);
  }
  return absl::OkStatus();
}

// Copies data file `name` whole into `out`, checking the CRC of every
// fixed-size entry in `entries` (sorted by offset) as its bytes go by.
absl::Status CopyDataFile(Storage* storage, const std::string& local_root, const std::string& name,
                          std::vector<Checked>* entries, TempFile* out, ProgressCounter* progress) {
  ASSIGN_OR_RETURN(std::unique_ptr<ReadableFile> file, storage->NewReadableFile(name));
  const uint64_t size = file->Size();
  auto corrupt = [&](const BundleEntry& e, absl::string_view what) {
    return absl::DataLossError(absl::StrCat("tensor \"", e.key, "\" in ", file->name(), " at offset ",
                                            e.offset, ": ", what));
  };
  for (const Checked& c : *entries) {
    if (static_cast<uint64_t>(c.entry.offset) + static_cast<uint64_t>(c.entry.size) > size) {
      return corrupt(c.entry, absl::StrCat("entry of ", c.entry.size, " bytes runs past the end of the ",
                                           size, "-byte data file"));
    }
  }
  RETURN_IF_ERROR(CreateTemp(out->final_path, size, out));
  int src = -1;
  std::unique_ptr<Fd> src_fd;
  if (!local_root.empty()) {
    src_fd = std::make_unique<Fd>(::open(JoinPath(local_root, name).c_str(), O_RDONLY | O_CLOEXEC));
    src = src_fd->fd;
  }
  std::string buffer;
  size_t first_open = 0;  // entries before it are checked
  for (uint64_t at = 0; at < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kWindow, size - at));
    void* m = nullptr;
    const char* p;
    if (src >= 0) {
      m = ::mmap(nullptr, n, PROT_READ, MAP_SHARED | MAP_POPULATE, src, static_cast<off_t>(at));
      if (m == MAP_FAILED) return ErrnoError(absl::StrCat("mapping ", file->name()), errno);
      p = static_cast<const char*>(m);
    } else {
      buffer.resize(n);
      RETURN_IF_ERROR(file->ReadAt(at, n, buffer.data()));
      p = buffer.data();
    }
    absl::Status s;
    const uint64_t end = at + n;
    for (size_t i = first_open; s.ok() && i < entries->size(); ++i) {
      Checked& c = (*entries)[i];
      const uint64_t b = static_cast<uint64_t>(c.entry.offset);
      const uint64_t e = b + static_cast<uint64_t>(c.entry.size);
      if (b >= end) break;
      const uint64_t from = std::max(b, at), to = std::min(e, end);
      if (from < to) c.crc = crc32c::Extend(c.crc, p + (from - at), static_cast<size_t>(to - from));
      if (e <= end && i == first_open) {
        ++first_open;
        if (c.crc != crc32c::Unmask(c.entry.masked_crc32c)) s = corrupt(c.entry, "checksum does not match");
      } else if (e <= end && c.crc != crc32c::Unmask(c.entry.masked_crc32c)) {
        s = corrupt(c.entry, "checksum does not match");
      }
    }
    if (s.ok() && !(src >= 0 && CopyRange(src, at, out->fd, at, n))) {
      s = PwriteAll(out->fd, p, n, at, out->final_path);
    }
    if (m != nullptr) ::munmap(m, n);
    RETURN_IF_ERROR(s);
    ::sync_file_range(out->fd, static_cast<off_t>(at), static_cast<off_t>(n), SYNC_FILE_RANGE_WRITE);
    at = end;
    progress->Add(n);
  }
  // Entries that end exactly at the file's end were checked above; none is
  // left open (every entry lies within the file).
  if (::fsync(out->fd) != 0) return ErrnoError(absl::StrCat("syncing ", out->final_path), errno);
  return absl::OkStatus();
}

}  // namespace

std::string CheckpointPrefixAt(const std::string& dst) {
  if (absl::EndsWith(dst, "/")) return absl::StrCat(dst, "variables");
  const std::string local = LocalRoot(dst);
  if (local.empty()) return dst;  // remote: no directory to find
  std::error_code error;
  if (std::filesystem::is_directory(local, error)) return absl::StrCat(dst, "/variables");
  return dst;
}

absl::StatusOr<StreamRestoreSummary> CopyCheckpointFiles(absl::string_view prefix_uri,
                                                         const std::string& dst_prefix, int threads,
                                                         const ProgressFn& progress_fn,
                                                         const StorageOptions& storage_options) {
  ASSIGN_OR_RETURN(SplitPrefix split, SplitPrefixUri(prefix_uri));
  ASSIGN_OR_RETURN(std::unique_ptr<Storage> storage, OpenStorage(split.root_uri, storage_options));
  ASSIGN_OR_RETURN(std::unique_ptr<BundleReader> reader, BundleReader::Open(storage.get(), split.prefix));
  const int num_shards = reader->num_shards();
  StreamRestoreSummary summary;
  std::vector<std::vector<Checked>> by_file(static_cast<size_t>(std::max(num_shards, 0)));
  std::vector<BundleEntry> strings;
  RETURN_IF_ERROR(reader->ForEachEntry([&](const BundleEntry& e) -> absl::Status {
    if (!e.key.empty() && e.key[0] != '\0') ++summary.tensors;  // slice entries are parts of one
    if (e.is_sliced()) return absl::OkStatus();                  // no data of its own
    if (e.shard_id < 0 || e.shard_id >= num_shards || e.offset < 0 || e.size < 0) {
      return absl::DataLossError(absl::StrCat("tensor \"", e.key, "\": invalid place in ", prefix_uri,
                                              ".index (shard ", e.shard_id, ", offset ", e.offset, ")"));
    }
    summary.bytes += static_cast<uint64_t>(e.size);
    if (DataTypeSize(e.data_type()) == 0) {
      strings.push_back(e);  // checked through the reader below
    } else {
      by_file[static_cast<size_t>(e.shard_id)].push_back({e, 0});
    }
    return absl::OkStatus();
  }));
  for (const BundleEntry& e : strings) RETURN_IF_ERROR(reader->ReadEntry(e).status());
  uint64_t total = 0;
  for (int i = 0; i < num_shards; ++i) {
    std::sort(by_file[i].begin(), by_file[i].end(),
              [](const Checked& a, const Checked& b) { return a.entry.offset < b.entry.offset; });
    ASSIGN_OR_RETURN(uint64_t n, storage->FileSize(DataFileName(split.prefix, i, num_shards)));
    total += n;
  }

  RETURN_IF_ERROR(MakeParentDirs(IndexFileName(dst_prefix)));
  ProgressCounter progress(progress_fn, total);
  progress.Begin();
  const std::string local_root = LocalRoot(split.root_uri);
  std::vector<std::unique_ptr<TempFile>> outs;
  for (int i = 0; i < num_shards; ++i) {
    outs.push_back(std::make_unique<TempFile>());
    outs.back()->final_path = DataFileName(dst_prefix, i, num_shards);
  }
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  absl::Status first_error;
  auto work = [&] {
    while (!failed.load(std::memory_order_relaxed)) {
      const int i = next.fetch_add(1);
      if (i >= num_shards) return;
      absl::Status s = CopyDataFile(storage.get(), local_root, DataFileName(split.prefix, i, num_shards),
                                    &by_file[i], outs[i].get(), &progress);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (first_error.ok()) first_error = s;
        failed.store(true);
        return;
      }
    }
  };
  const int num_threads = std::min(std::max(threads, 1), std::max(num_shards, 1));
  std::vector<std::thread> pool;
  for (int i = 1; i < num_threads; ++i) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  RETURN_IF_ERROR(first_error);

  // The index, byte for byte.
  outs.push_back(std::make_unique<TempFile>());
  {
    TempFile& index = *outs.back();
    ASSIGN_OR_RETURN(std::unique_ptr<ReadableFile> file,
                     storage->NewReadableFile(IndexFileName(split.prefix)));
    std::string bytes(file->Size(), '\0');
    RETURN_IF_ERROR(file->ReadAt(0, bytes.size(), bytes.data()));
    RETURN_IF_ERROR(CreateTemp(IndexFileName(dst_prefix), bytes.size(), &index));
    RETURN_IF_ERROR(PwriteAll(index.fd, bytes.data(), bytes.size(), 0, index.final_path));
    if (::fsync(index.fd) != 0) return ErrnoError(absl::StrCat("syncing ", index.final_path), errno);
  }
  // Data files first, the index last.
  for (const std::unique_ptr<TempFile>& f : outs) {
    if (::rename(f->path.c_str(), f->final_path.c_str()) != 0) {
      return ErrnoError(absl::StrCat("renaming ", f->path, " to ", f->final_path), errno);
    }
    f->path.clear();
  }
  RETURN_IF_ERROR(SyncDirOf(IndexFileName(dst_prefix)));
  progress.Finish();
  return summary;
}

}  // namespace internal
}  // namespace cairn
