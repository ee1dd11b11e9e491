// The storage interface: every byte Cairn reads or writes goes through it, so
// the same bundle reader and writer work on local files, S3 and HTTP.
//
// Paths are '/'-separated names relative to the backend's root (a directory
// for local files, a bucket prefix for S3). A backend opened for a URI
// (`OpenStorage("file:///data/ckpts")`) resolves "job/ckpt-1/variables.index"
// beneath that root and refuses names that would escape it.
//
// Writes are atomic at file granularity: a WritableFile's bytes become
// visible under its name only when Close() succeeds (local: temp file, fsync,
// rename, directory fsync; S3: multipart complete). Abandoning one leaves
// nothing behind.
//
//   auto storage = cairn::OpenStorage("/tmp/ckpts", cairn::StorageOptions{});
//   auto out = (*storage)->NewWritableFile("a/b.bin");
//   (*out)->Append("hello"); (*out)->Close();
//   auto in = (*storage)->NewReadableFile("a/b.bin");
//   std::string buf(5, '\0'); (*in)->ReadAt(0, 5, buf.data());
#ifndef CAIRN_STORAGE_STORAGE_H_
#define CAIRN_STORAGE_STORAGE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cairn {

// A file opened for positional reads. Thread-safe: ReadAt may be called
// concurrently from several threads.
class ReadableFile {
 public:
  virtual ~ReadableFile() = default;
  // Reads exactly `n` bytes at `offset` into `dst`. A read past the end is
  // OutOfRange naming the file.
  virtual absl::Status ReadAt(uint64_t offset, size_t n, char* dst) const = 0;
  // Size in bytes, fixed when the file was opened.
  virtual uint64_t Size() const = 0;
  // The name the file was opened under, for error messages.
  virtual const std::string& name() const = 0;
  // True if many small ReadAt calls cost about as much as one large one
  // (local files: yes; remote objects: no, each is a request).
  virtual bool prefers_small_reads() const { return false; }
  // Bytes [offset, offset+n) mapped into memory copy-on-write (writes through
  // the pointer change only this process's copy, never the file), pages
  // already faulted in; the pointer keeps the mapping alive after the file
  // object is gone. Unimplemented for backends that cannot map (remote
  // objects). Valid only while the file is not truncated or rewritten in
  // place, which Cairn never does to a published checkpoint.
  virtual absl::StatusOr<std::shared_ptr<char>> MapRange(uint64_t offset, size_t n) const;
};

// A file being written. Not thread-safe. Append buffers as the backend sees
// fit; Close makes the complete file visible atomically.
class WritableFile {
 public:
  // Destroying an un-closed file abandons it.
  virtual ~WritableFile() = default;
  virtual absl::Status Append(absl::string_view data) = 0;
  // Bytes appended so far.
  virtual uint64_t Size() const = 0;
  // Makes the file durable and visible under its final name.
  // REQUIRES: neither Close nor Abandon has been called.
  virtual absl::Status Close() = 0;
  // Drops everything written; the final name is untouched.
  virtual void Abandon() = 0;
  virtual const std::string& name() const = 0;
};

class Storage {
 public:
  virtual ~Storage() = default;

  virtual absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(
      absl::string_view path) = 0;
  // Starts writing `path` (replacing it at Close if it exists). Parent
  // "directories" are created as needed.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      absl::string_view path) = 0;
  // NotFound if absent.
  virtual absl::StatusOr<uint64_t> FileSize(absl::string_view path) = 0;
  virtual absl::StatusOr<bool> Exists(absl::string_view path) = 0;
  // Atomically renames a file (replacing `to`). Durable when it returns.
  virtual absl::Status Rename(absl::string_view from, absl::string_view to) = 0;
  // Renames each (from, to) as Rename does, all durable when it returns
  // (a local root syncs each directory once, not once per file). Stops at
  // the first failure; the renames before it are done.
  virtual absl::Status RenameMany(const std::vector<std::pair<std::string, std::string>>& moves) {
    for (const auto& [from, to] : moves) {
      absl::Status s = Rename(from, to);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  // Deletes one file. Deleting a missing file is OK (idempotent).
  virtual absl::Status Delete(absl::string_view path) = 0;
  // Deletes several files (S3: batch deletes of up to 1000 keys). Same
  // semantics as Delete for each.
  virtual absl::Status DeleteMany(const std::vector<std::string>& paths) {
    for (const std::string& p : paths) {
      absl::Status s = Delete(p);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  // Removes `dir` if it is empty; OK if it is absent or not empty
  // (objects stores have no directories).
  virtual absl::Status RemoveDirIfEmpty(absl::string_view dir) = 0;
  // Names (relative to the root, sorted) of every file under `dir`.
  virtual absl::StatusOr<std::vector<std::string>> List(absl::string_view dir) = 0;
  // The URI this backend was opened for, e.g. "file:///data/ckpts".
  virtual std::string uri() const = 0;
};

// Settings of the remote backends.
struct S3Options {
  std::string endpoint;              // http(s)://HOST[:PORT] (AWS_ENDPOINT_URL)
  std::string region = "us-east-1";  // AWS_REGION
  std::string access_key;            // AWS_ACCESS_KEY_ID
  std::string secret_key;            // AWS_SECRET_ACCESS_KEY
  std::string session_token;         // AWS_SESSION_TOKEN (optional)
  // Total time one operation may spend retrying 5xx / SlowDown / resets /
  // timeouts (exponential backoff with jitter) before failing.
  int64_t retry_total_ms = 120000;
  size_t part_size = 8 << 20;   // multipart upload part size (>= 5 MiB)
  int upload_parallelism = 4;   // parts in flight per file (memory: this × part_size)
  int list_page_size = 1000;    // ListObjectsV2 max-keys
};

struct StorageOptions {
  S3Options s3;
  int read_parallelism = 4;         // concurrent ranged GETs of one large remote read
  size_t read_chunk = 8 << 20;      // size of each ranged GET
  // Local files are written with O_DIRECT (where the filesystem has it),
  // bypassing the page cache: far less CPU per byte for large files (the
  // shard writers turn it on), at the price of a cold cache for readers.
  bool local_direct_io = false;
};

// Local (or shared POSIX) filesystem rooted at `root_dir`.
absl::StatusOr<std::unique_ptr<Storage>> NewLocalStorage(absl::string_view root_dir,
                                                         bool direct_io = false);

// A process-local, in-memory backend (tests, fuzzing). Thread-safe.
std::unique_ptr<Storage> NewMemoryStorage();

// Opens the backend for a storage URI: "/abs/path", "file:///abs/path", a
// relative path (local), "s3://BUCKET/PREFIX" (path-style requests, AWS
// Signature V4), "http(s)://HOST/PATH" (read-only, Range GETs) or
// "memory://NAME" (in-process; one store per NAME). Each backend registers
// its schemes itself (storage/registry.h). The options come from the caller:
// only a program's main() reads flags and the environment.
absl::StatusOr<std::unique_ptr<Storage>> OpenStorage(absl::string_view uri,
                                                     const StorageOptions& options);

// `uri` with a relative local path made absolute against the working
// directory (other URIs unchanged): for a root handed to other processes.
absl::StatusOr<std::string> AbsoluteStorageUri(absl::string_view uri);

// Splits a checkpoint prefix URI ("/d/ckpt-1/variables", "s3://b/x/variables")
// into the storage root holding it and the prefix relative to that root.
struct SplitPrefix {
  std::string root_uri;
  std::string prefix;
};
absl::StatusOr<SplitPrefix> SplitPrefixUri(absl::string_view prefix_uri);

// Joins '/'-separated path components, skipping empty ones.
std::string JoinPath(absl::string_view a, absl::string_view b);

// errno as a Status, "OP PATH: strerror": ENOENT NotFound, EACCES/EPERM
// PermissionDenied, ENOSPC/EDQUOT/EFBIG ResourceExhausted, EINTR/EAGAIN
// Unavailable, anything else Internal. What every local file operation
// reports (the local backend's, and the client's own restore output).
absl::Status ErrnoStatus(absl::string_view op, absl::string_view path, int err);

// The name a write of `path` uses until it is closed ("PATH.tmp-N" on a
// local root; object stores have none). A process killed mid-write leaves
// it behind, and only its writer's successor can tell it from a live one.
std::string TemporaryNameOf(absl::string_view path, uint64_t nonce);
// True for `name` == TemporaryNameOf(path, n) for some n.
bool IsTemporaryNameOf(absl::string_view name, absl::string_view path);

}  // namespace cairn

#endif  // CAIRN_STORAGE_STORAGE_H_
