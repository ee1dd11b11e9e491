// The POSIX file objects: positional reads (pread, mmap), buffered atomic
// writes (temp file, fsync, rename, directory fsync) and the O_DIRECT writer
// the shard writers use for large files.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "storage/backends/posix_files.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open directory", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus("fsync directory", dir, err);
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& dir) {
  if (dir.empty() || dir == "/" || dir == ".") return absl::OkStatus();
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(dir, " exists and is not a directory"));
  }
  RETURN_IF_ERROR(MakeDirs(DirName(dir)));
  if (::mkdir(dir.c_str(), 0755) != 0) {
    if (errno == EEXIST) return absl::OkStatus();  // made by a racing writer, who syncs it
    return ErrnoStatus("mkdir", dir, errno);
  }
  // A new directory's entry lives in its parent: without this, a crash can
  // lose the directory, and with it every file later made durable inside.
  return SyncDir(DirName(dir));
}

namespace {

class PosixReadableFile : public ReadableFile {
 public:
  PosixReadableFile(std::string name, int fd, uint64_t size)
      : name_(std::move(name)), fd_(fd), size_(size) {}
  ~PosixReadableFile() override { ::close(fd_); }

  absl::Status ReadAt(uint64_t offset, size_t n, char* dst) const override {
    if (offset > size_ || n > size_ - offset) {
      return absl::OutOfRangeError(absl::StrCat("read of ", n, " bytes at offset ", offset,
                                                " is past the end of ", name_, " (",
                                                size_, " bytes)"));
    }
    while (n > 0) {
      ssize_t got = ::pread(fd_, dst, n, static_cast<off_t>(offset));
      if (got < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("read", name_, errno);
      }
      if (got == 0) {
        return absl::DataLossError(absl::StrCat(name_, " shrank while being read"));
      }
      dst += got;
      n -= static_cast<size_t>(got);
      offset += static_cast<uint64_t>(got);
    }
    return absl::OkStatus();
  }
  uint64_t Size() const override { return size_; }
  const std::string& name() const override { return name_; }
  bool prefers_small_reads() const override { return true; }

  absl::StatusOr<std::shared_ptr<char>> MapRange(uint64_t offset, size_t n) const override {
    if (offset > size_ || n > size_ - offset) {
      return absl::OutOfRangeError(absl::StrCat("mapping of ", n, " bytes at offset ", offset,
                                                " is past the end of ", name_, " (",
                                                size_, " bytes)"));
    }
    ASSIGN_OR_RETURN(std::shared_ptr<char> base, Mapping());
    char* p = base.get() + offset;
    if (n > 0) {
      // One call maps the range's pages instead of a fault per few pages;
      // advisory (older kernels lack it: the pages then fault in on use).
      const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
      const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
      const uintptr_t end = reinterpret_cast<uintptr_t>(p) + n;
#ifdef MADV_POPULATE_READ
      ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ);
#endif
    }
    return std::shared_ptr<char>(std::move(base), p);
  }

 private:
  // The whole file, mapped once on first use and unmapped when the last
  // user (this file or a buffer viewing it) is gone.
  absl::StatusOr<std::shared_ptr<char>> Mapping() const {
    std::lock_guard<std::mutex> lock(map_mu_);
    if (mapping_) return mapping_;
    if (size_ == 0) return absl::FailedPreconditionError(absl::StrCat(name_, " is empty"));
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd_, 0);
    if (p == MAP_FAILED) return ErrnoStatus("mmap", name_, errno);
    const size_t len = size_;
    mapping_ = std::shared_ptr<char>(static_cast<char*>(p), [len](char* q) { ::munmap(q, len); });
    return mapping_;
  }

  std::string name_;
  int fd_;
  uint64_t size_;
  mutable std::mutex map_mu_;
  mutable std::shared_ptr<char> mapping_;  // GUARDED_BY(map_mu_)
};

// The end of every file written: fsync and close `fd` (the temp file), and
// if all went well (`s`, the status so far) rename it to its final name and
// sync the directory; on any failure the temp file is removed.
absl::Status SyncCloseAndPublish(int fd, const std::string& temp, const std::string& final_path,
                                 absl::Status s) {
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoStatus("fsync", temp, errno);
  if (::close(fd) != 0 && s.ok()) s = ErrnoStatus("close", temp, errno);
  if (s.ok() && ::rename(temp.c_str(), final_path.c_str()) != 0) s = ErrnoStatus("rename", temp, errno);
  if (!s.ok()) {
    ::unlink(temp.c_str());
    return s;
  }
  return SyncDir(DirName(final_path));
}

// Writes to "<final>.tmp-<random>" and renames at Close (spec §1.1 does the
// same with ".tempstate<random>").
class PosixWritableFile : public WritableFile {
 public:
  static constexpr size_t kBufferSize = 1 << 20;

  PosixWritableFile(std::string final_path, std::string temp_path, int fd)
      : final_path_(std::move(final_path)), temp_path_(std::move(temp_path)), fd_(fd) {
    buffer_.reserve(kBufferSize);
  }
  ~PosixWritableFile() override {
    if (fd_ >= 0) Abandon();
  }

  absl::Status Append(absl::string_view data) override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(final_path_, " is closed"));
    size_ += data.size();
    if (buffer_.size() + data.size() <= kBufferSize) {
      buffer_.append(data.data(), data.size());
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(FlushBuffer());
    if (data.size() >= kBufferSize) return WriteAll(data.data(), data.size());
    buffer_.append(data.data(), data.size());
    return absl::OkStatus();
  }

  uint64_t Size() const override { return size_; }

  absl::Status Close() override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(final_path_, " is closed"));
    absl::Status s = FlushBuffer();
    const int fd = std::exchange(fd_, -1);
    return SyncCloseAndPublish(fd, temp_path_, final_path_, std::move(s));
  }

  void Abandon() override {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
      ::unlink(temp_path_.c_str());
    }
  }

  const std::string& name() const override { return final_path_; }

 private:
  absl::Status FlushBuffer() {
    absl::Status s = WriteAll(buffer_.data(), buffer_.size());
    buffer_.clear();
    return s;
  }

  absl::Status WriteAll(const char* p, size_t n) {
    while (n > 0) {
      ssize_t wrote = ::write(fd_, p, n);
      if (wrote < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("write", final_path_, errno);
      }
      p += wrote;
      n -= static_cast<size_t>(wrote);
      written_ += static_cast<uint64_t>(wrote);
    }
    StartWriteback();
    return absl::OkStatus();
  }

  // Starts the disk writing the bytes written so far, without waiting, once
  // kWritebackBytes have gathered: the disk then works while the rest of the
  // file streams in, and Close's fsync has little left to do (the kernel
  // would otherwise hold gigabytes dirty until the fsync). Advisory: errors
  // surface at the fsync.
  void StartWriteback() {
    if (written_ - writeback_started_ < kWritebackBytes) return;
    ::sync_file_range(fd_, static_cast<off_t>(writeback_started_),
                      static_cast<off_t>(written_ - writeback_started_), SYNC_FILE_RANGE_WRITE);
    writeback_started_ = written_;
  }

  static constexpr uint64_t kWritebackBytes = 8 << 20;
  std::string final_path_;
  std::string temp_path_;
  int fd_;
  uint64_t size_ = 0;
  uint64_t written_ = 0;             // bytes handed to write()
  uint64_t writeback_started_ = 0;  // bytes sync_file_range was asked to write
  std::string buffer_;
};

// Writes with O_DIRECT: bytes go from an aligned staging buffer straight to
// the disk, never through the page cache. On a buffered write the kernel
// copies every byte into freshly allocated page-cache pages, then writes
// them back at the fsync; for checkpoint-sized files that copy and
// allocation are most of a writer's CPU time (measured here: 1.3-2.9 s of
// system time per 2 GiB buffered, 0.13-0.26 s direct). Two buffers: Append
// fills one while a background thread writes the other, so the disk works
// while the stream keeps arriving. The tail is written padded to the block
// size, then the file is truncated to its true length.
class DirectWritableFile : public WritableFile {
 public:
  static constexpr size_t kBufferSize = 8 << 20;
  static constexpr size_t kAlign = 4096;
  static constexpr size_t kHugePage = 2 << 20;

  DirectWritableFile(std::string final_path, std::string temp_path, int fd)
      : final_path_(std::move(final_path)), temp_path_(std::move(temp_path)), fd_(fd) {
    for (auto& b : buffers_) {
      // On 2 MiB boundaries and marked for huge pages: the kernel pins a
      // direct write's pages for each pwrite, 4 huge pages per buffer
      // rather than 2,048 small ones.
      void* p = nullptr;
      if (::posix_memalign(&p, kHugePage, kBufferSize) != 0) p = nullptr;
      if (p != nullptr) ::madvise(p, kBufferSize, MADV_HUGEPAGE);  // advisory
      b.reset(static_cast<char*>(p));
    }
    writer_ = std::thread([this] { WriteLoop(); });
  }
  ~DirectWritableFile() override {
    if (fd_ >= 0) Abandon();
    StopWriter();
  }

  absl::Status Append(absl::string_view data) override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(final_path_, " is closed"));
    if (!buffers_[0] || !buffers_[1]) return absl::ResourceExhaustedError("no memory for direct I/O buffers");
    size_ += data.size();
    while (!data.empty()) {
      const size_t n = std::min(kBufferSize - fill_, data.size());
      std::memcpy(buffers_[current_].get() + fill_, data.data(), n);
      fill_ += n;
      data.remove_prefix(n);
      if (fill_ == kBufferSize) RETURN_IF_ERROR(Submit(kBufferSize));
    }
    return absl::OkStatus();
  }

  uint64_t Size() const override { return size_; }

  absl::Status Close() override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(final_path_, " is closed"));
    absl::Status s = Drain();
    if (s.ok() && fill_ > 0) {
      const size_t padded = (fill_ + kAlign - 1) / kAlign * kAlign;
      std::memset(buffers_[current_].get() + fill_, 0, padded - fill_);
      s = WriteAt(buffers_[current_].get(), padded, offset_);
    }
    if (s.ok() && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
      s = ErrnoStatus("truncate", temp_path_, errno);
    }
    StopWriter();
    const int fd = std::exchange(fd_, -1);
    return SyncCloseAndPublish(fd, temp_path_, final_path_, s);
  }

  void Abandon() override {
    if (fd_ < 0) return;
    Drain().IgnoreError();
    ::close(fd_);
    fd_ = -1;
    ::unlink(temp_path_.c_str());
  }

  const std::string& name() const override { return final_path_; }

 private:
  absl::Status WriteAt(const char* p, size_t n, uint64_t offset) {
    while (n > 0) {
      const ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno != EINVAL) return ErrnoStatus("write", final_path_, errno);
      if (w < 0 || static_cast<size_t>(w) % kAlign != 0) {
        // The kernel cut the write short of a block boundary (a file-size
        // limit) or refused it: write the rest through the page cache,
        // which reports the real cause (e.g. EFBIG) or succeeds.
        return BufferedWriteAt(p + (w > 0 ? w : 0), n - (w > 0 ? static_cast<size_t>(w) : 0),
                               offset + (w > 0 ? static_cast<uint64_t>(w) : 0));
      }
      if (w == 0) return absl::DataLossError(absl::StrCat("short direct write to ", final_path_));
      p += w;
      n -= static_cast<size_t>(w);
      offset += static_cast<uint64_t>(w);
    }
    return absl::OkStatus();
  }

  absl::Status BufferedWriteAt(const char* p, size_t n, uint64_t offset) {
    const int fd = ::open(temp_path_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", temp_path_, errno);
    absl::Status s;
    while (n > 0) {
      const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        s = w < 0 ? ErrnoStatus("write", final_path_, errno)
                  : absl::DataLossError(absl::StrCat("short write to ", final_path_));
        break;
      }
      p += w;
      n -= static_cast<size_t>(w);
      offset += static_cast<uint64_t>(w);
    }
    ::close(fd);  // its pages are flushed by Close's fsync of the same file
    return s;
  }

  // Hands the current buffer's first `n` bytes to the background writer
  // (after it finished the previous one) and switches to the other buffer.
  absl::Status Submit(size_t n) {
    RETURN_IF_ERROR(Drain());
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = Job{buffers_[current_].get(), n, offset_};
    }
    cv_.notify_all();
    offset_ += n;
    current_ ^= 1;
    fill_ = 0;
    return absl::OkStatus();
  }

  // Waits for the background write in flight, if any; its error, if any.
  absl::Status Drain() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !job_.has_value(); });
    return error_;
  }

  void WriteLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return job_.has_value() || stop_; });
      if (!job_.has_value()) return;
      const Job job = *job_;
      const bool failed = !error_.ok();  // after a failure, later blocks are moot
      lock.unlock();
      absl::Status s = failed ? absl::OkStatus() : WriteAt(job.data, job.size, job.offset);
      lock.lock();
      if (error_.ok()) error_ = s;
      job_.reset();
      cv_.notify_all();
    }
  }

  void StopWriter() {
    if (!writer_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    writer_.join();
  }

  struct Job {
    const char* data;
    size_t size;
    uint64_t offset;
  };
  struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
  };

  std::string final_path_;
  std::string temp_path_;
  int fd_;
  uint64_t size_ = 0;    // bytes appended
  uint64_t offset_ = 0;  // file offset of the current buffer's first byte
  std::unique_ptr<char, FreeDeleter> buffers_[2];
  int current_ = 0;      // the buffer Append fills
  size_t fill_ = 0;      // bytes in it
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Job> job_;  // GUARDED_BY(mu_): the write in flight
  absl::Status error_;      // GUARDED_BY(mu_): the first failed write
  bool stop_ = false;       // GUARDED_BY(mu_)
  std::thread writer_;
};
}  // namespace

std::unique_ptr<ReadableFile> NewPosixReadableFile(std::string name, int fd, uint64_t size) {
  return std::make_unique<PosixReadableFile>(std::move(name), fd, size);
}

std::unique_ptr<WritableFile> NewPosixWritableFile(std::string final_path, std::string temp, int fd) {
  return std::make_unique<PosixWritableFile>(std::move(final_path), std::move(temp), fd);
}

std::unique_ptr<WritableFile> NewDirectWritableFile(std::string final_path, std::string temp, int fd) {
  return std::make_unique<DirectWritableFile>(std::move(final_path), std::move(temp), fd);
}

}  // namespace internal
}  // namespace cairn
