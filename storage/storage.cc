// OpenStorage's scheme registry and the URI helpers every backend shares.
#include "storage/storage.h"

#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "storage/registry.h"

namespace cairn {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, StorageOpener, std::less<>> openers;  // GUARDED_BY(mu)
};

Registry& GetRegistry() {
  static Registry* registry = new Registry;  // never destroyed: used from static init
  return *registry;
}

}  // namespace

StorageSchemeRegistration::StorageSchemeRegistration(absl::string_view scheme,
                                                     StorageOpener opener) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (!r.openers.emplace(std::string(scheme), opener).second) {
    std::fprintf(stderr, "storage scheme \"%s\" registered twice\n", std::string(scheme).c_str());
    std::abort();
  }
}

std::vector<std::string> RegisteredStorageSchemes() {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> out;
  for (const auto& [scheme, opener] : r.openers) out.push_back(scheme);
  return out;
}

absl::StatusOr<std::shared_ptr<char>> ReadableFile::MapRange(uint64_t, size_t) const {
  return absl::UnimplementedError(absl::StrCat(name(), " cannot be mapped into memory"));
}

absl::StatusOr<std::unique_ptr<Storage>> OpenStorage(absl::string_view uri,
                                                     const StorageOptions& options) {
  if (uri.empty()) return absl::InvalidArgumentError("empty storage URI");
  const size_t sep = uri.find("://");
  const absl::string_view scheme = sep == absl::string_view::npos ? "file" : uri.substr(0, sep);
  StorageOpener opener = nullptr;
  {
    Registry& r = GetRegistry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.openers.find(scheme);
    if (it != r.openers.end()) opener = it->second;
  }
  if (opener == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "storage URI \"", uri, "\": unsupported scheme (use a path or ",
        absl::StrJoin(RegisteredStorageSchemes(), ", ",
                      [](std::string* out, const std::string& s) { absl::StrAppend(out, s, "://"); }),
        ")"));
  }
  return opener(uri, options);
}

absl::StatusOr<std::string> AbsoluteStorageUri(absl::string_view uri) {
  if (uri.empty()) return absl::InvalidArgumentError("empty storage URI");
  if (absl::StrContains(uri, "://") || absl::StartsWith(uri, "/")) return std::string(uri);
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) {
    return absl::InternalError(absl::StrCat("storage URI \"", uri, "\": cannot read the working directory"));
  }
  std::string path(uri);
  while (absl::StartsWith(path, "./")) path = path.substr(2);
  return absl::StrCat(cwd, "/", path);
}

absl::Status ErrnoStatus(absl::string_view op, absl::string_view path, int err) {
  std::string msg = absl::StrCat(op, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(msg);
    case EINTR:
    case EAGAIN:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

std::string TemporaryNameOf(absl::string_view path, uint64_t nonce) {
  return absl::StrCat(path, ".tmp-", nonce);
}

bool IsTemporaryNameOf(absl::string_view name, absl::string_view path) {
  if (!absl::ConsumePrefix(&name, path) || !absl::ConsumePrefix(&name, ".tmp-")) return false;
  uint64_t n;
  return absl::SimpleAtoi(name, &n);
}

std::string JoinPath(absl::string_view a, absl::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  if (absl::EndsWith(a, "/")) return absl::StrCat(a, b);
  return absl::StrCat(a, "/", b);
}

absl::StatusOr<SplitPrefix> SplitPrefixUri(absl::string_view prefix_uri) {
  if (prefix_uri.empty()) return absl::InvalidArgumentError("empty checkpoint prefix");
  size_t scheme_end = prefix_uri.find("://");
  size_t path_start = scheme_end == absl::string_view::npos ? 0 : scheme_end + 3;
  size_t slash = prefix_uri.rfind('/');
  if (slash == absl::string_view::npos || slash < path_start) {
    if (path_start != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint prefix \"", prefix_uri, "\" has no file name part"));
    }
    return SplitPrefix{".", std::string(prefix_uri)};
  }
  SplitPrefix out;
  out.root_uri = std::string(prefix_uri.substr(0, slash));
  if (out.root_uri.empty()) out.root_uri = "/";
  if (path_start != 0 && slash + 1 == prefix_uri.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint prefix \"", prefix_uri, "\" ends with '/'"));
  }
  out.prefix = std::string(prefix_uri.substr(slash + 1));
  if (out.prefix.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint prefix \"", prefix_uri, "\" ends with '/'"));
  }
  return out;
}

}  // namespace cairn
