// A Storage that counts its failed operations in the Prometheus counter
// cairn_storage_errors_total{component, op}, what the "storage errors"
// alert (deploy/prometheus/cairn-alerts.yml) watches:
//
//   ASSIGN_OR_RETURN(auto base, OpenStorage(uri, options));
//   std::unique_ptr<Storage> storage = MeteredStorage(std::move(base), "writer");
//
// `op` is the operation: open_read, open_write, read, append, close, size,
// exists, rename, delete, remove_dir, list, map. Answers that are not
// failures are not counted: NotFound (a missing file is an answer to
// "size" or "open_read"), Unimplemented (a backend that cannot map), and
// OutOfRange (a read past the end, a caller's mistake reported as such).
// Every op of `component` is exported at zero from the start.
#ifndef CAIRN_STORAGE_METERED_STORAGE_H_
#define CAIRN_STORAGE_METERED_STORAGE_H_

#include <memory>
#include <string>

#include "storage/storage.h"

namespace cairn {

std::unique_ptr<Storage> MeteredStorage(std::unique_ptr<Storage> base, const std::string& component);

}  // namespace cairn

#endif  // CAIRN_STORAGE_METERED_STORAGE_H_
