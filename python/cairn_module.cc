// _cairn: the pybind11 binding of the Cairn client library (client/client.h).
// The Pythonic layer is python/cairn/__init__.py; this module stays close to
// the C++ API.
//
// Save: tensors arrive as objects exposing the buffer protocol (NumPy arrays,
// memoryviews, bytes, ...). They must be C-contiguous and native/little-endian;
// the module passes an absl::string_view over their memory, no copy. The
// buffers are held (PyBuffer) until SaveShard returns, or until
// SaveShardAsync has copied them into its staging buffers.
//
// Restore: each tensor's cairn::Buffer is moved into a heap object owned by a
// py::capsule that is the base of the returned NumPy array: no copy.
//
// Network calls run with the GIL released. Errors raise _cairn.Error (a
// RuntimeError) whose message is the C++ status ("NOT_FOUND: ...") and whose
// `code` attribute is the status code name ("NOT_FOUND").
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/internal/stream_restore.h"
#include "proto/cmdline/flags.h"
#include "python/convert.h"
#include "python/save_stream.h"
#include "python/structure.h"
#include "python/torch_block.h"

namespace py = pybind11;
using namespace pybind11::literals;  // NOLINT: pybind11's "name"_a keywords

namespace cairn_python {
namespace {

// ---------------------------------------------------------------- classes

class PySaveHandle {
 public:
  explicit PySaveHandle(std::unique_ptr<cairn::SaveHandle> handle) : handle_(std::move(handle)) {}
  py::dict Wait() {
    absl::StatusOr<cairn::SaveShardResult> result;
    {
      py::gil_scoped_release release;
      result = handle_->Wait();
    }
    return SaveResultToDict(Unwrap(std::move(result)));
  }
  bool Done() const { return handle_->Done(); }
  int64_t DurableAfterMicros() const { return handle_->durable_after_micros(); }

 private:
  std::unique_ptr<cairn::SaveHandle> handle_;
};

// Restores from `prefix_uri` into the local file `path` without holding the
// checkpoint in memory (client/internal/stream_restore.h): a ".safetensors"
// path gets the tensors `request` selects; any other path is a checkpoint
// prefix that gets the whole checkpoint, its files copied whole. Every
// checksum is checked on the way. Called without the GIL.
struct FileRestore {
  cairn::internal::StreamRestoreSummary summary;
  std::string path;  // where it went: the file, or the checkpoint prefix
  std::vector<std::string> skipped;  // why each skipped tensor was (strict=False)
};

absl::Status CheckLocalPath(const std::string& path) {
  if (path.empty() || absl::StrContains(path, "://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "restore_to_file writes a local file or checkpoint prefix, not \"", path, "\""));
  }
  return absl::OkStatus();
}

absl::Status StreamToFile(const std::string& prefix_uri, const cairn::RestoreRequest& request,
                          const std::string& path, bool strict, int threads, FileRestore* out) {
  absl::StatusOr<cairn::internal::StreamRestoreSummary> summary;
  if (absl::EndsWith(path, ".safetensors")) {
    cairn::internal::StreamRestoreOptions options;
    options.strict = strict;
    options.threads = threads;
    options.warn = [out](const std::string& why) { out->skipped.push_back(why); };
    out->path = path;
    summary = cairn::internal::StreamRestoreToSafetensors(
        prefix_uri, request, path, options, nullptr, cairn::cmdline::StorageOptionsFromEnvironment());
  } else if (request.tensors.empty() && request.slices.empty()) {
    out->path = cairn::internal::CheckpointPrefixAt(path);  // a directory: DIR/variables
    summary = cairn::internal::CopyCheckpointFiles(prefix_uri, out->path, threads, nullptr,
                                                   cairn::cmdline::StorageOptionsFromEnvironment());
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "chosen tensors or slices go to a .safetensors file; \"", path,
        "\" is a checkpoint prefix, which gets the whole checkpoint (or use restore())"));
  }
  if (!summary.ok()) return summary.status();
  out->summary = *summary;
  return absl::OkStatus();
}

py::dict FileRestoreToDict(const FileRestore& r) {
  py::dict d;
  d["tensors"] = r.summary.tensors;
  d["bytes"] = r.summary.bytes;
  d["skipped"] = r.skipped;
  d["path"] = r.path;
  return d;
}

class PyClient {
 public:
  static std::unique_ptr<PyClient> Connect(const std::string& coordinator, const std::string& token,
                                           const std::string& tls_ca, const std::string& tls_cert,
                                           const std::string& tls_key, int64_t rpc_timeout_ms,
                                           int64_t save_timeout_ms, int restore_threads) {
    cairn::ClientOptions options;
    options.coordinator = coordinator;
    options.token = token;
    options.tls.ca_file = tls_ca;
    options.tls.cert_file = tls_cert;
    options.tls.key_file = tls_key;
    options.rpc_timeout_ms = rpc_timeout_ms;
    options.save_timeout_ms = save_timeout_ms;
    options.restore_threads = restore_threads;
    // Python programs have no main() of ours: S3 settings come from the
    // AWS_* environment at connect time, as the CLI takes them.
    options.storage = cairn::cmdline::StorageOptionsFromEnvironment();
    absl::StatusOr<std::unique_ptr<cairn::Client>> client;
    {
      py::gil_scoped_release release;
      client = cairn::Client::Connect(options);
    }
    return std::unique_ptr<PyClient>(new PyClient(Unwrap(std::move(client))));
  }

  py::dict Save(const std::string& job, int64_t step, int shard, int num_shards,
                const py::list& tensors, const std::map<std::string, double>& metrics) {
    std::vector<HeldTensor> held;
    std::vector<cairn::SaveTensor> save = ToSaveTensors(tensors, &held);
    cairn::SaveShardOptions options = ToSaveOptions(job, step, shard, num_shards, metrics);
    absl::StatusOr<cairn::SaveShardResult> result;
    {
      py::gil_scoped_release release;
      result = client_->SaveShard(options, save);
    }
    return SaveResultToDict(Unwrap(std::move(result)));  // `held` released here, GIL held
  }

  std::unique_ptr<PySaveStream> SaveStream(const std::string& job, int64_t step, int shard,
                                           int num_shards,
                                           const std::map<std::string, double>& metrics) {
    cairn::SaveShardOptions options = ToSaveOptions(job, step, shard, num_shards, metrics);
    return std::make_unique<PySaveStream>(Unwrap(client_->BeginSaveShard(options)));
  }

  std::unique_ptr<PySaveHandle> SaveAsync(const std::string& job, int64_t step, int shard,
                                          int num_shards, const py::list& tensors,
                                          const std::map<std::string, double>& metrics) {
    std::vector<HeldTensor> held;
    std::vector<cairn::SaveTensor> save = ToSaveTensors(tensors, &held);
    cairn::SaveShardOptions options = ToSaveOptions(job, step, shard, num_shards, metrics);
    absl::StatusOr<std::unique_ptr<cairn::SaveHandle>> handle;
    {
      // Returns once the tensors are copied into staging buffers: the caller
      // may modify its arrays afterwards.
      py::gil_scoped_release release;
      handle = client_->SaveShardAsync(options, save);
    }
    return std::make_unique<PySaveHandle>(Unwrap(std::move(handle)));
  }

  py::list List(const std::string& job) {
    absl::StatusOr<std::vector<cairn::CheckpointSummary>> result;
    {
      py::gil_scoped_release release;
      result = client_->List(job);
    }
    py::list out;
    for (const cairn::CheckpointSummary& s : Unwrap(std::move(result))) out.append(SummaryToDict(s));
    return out;
  }

  py::dict Get(const std::string& job, std::optional<int64_t> step) {
    absl::StatusOr<cairn::CheckpointSummary> result;
    {
      py::gil_scoped_release release;
      result = client_->Get(job, step);
    }
    return SummaryToDict(Unwrap(std::move(result)));
  }

  py::dict Restore(const std::string& job, std::optional<int64_t> step,
                   const std::optional<std::vector<std::string>>& tensors,
                   const std::optional<std::map<std::string, std::string>>& slices,
                   bool map_files, const std::optional<IntoMap>& into) {
    cairn::RestoreRequest request = ToRestoreRequest(tensors, slices, map_files, into);
    absl::StatusOr<cairn::RestoredTensors> result;
    {
      py::gil_scoped_release release;
      result = client_->Restore(job, step, request);
    }
    return RestoredToDict(Unwrap(std::move(result)), into);
  }

  py::dict RestoreToFile(const std::string& job, std::optional<int64_t> step,
                         const std::string& path,
                         const std::optional<std::vector<std::string>>& tensors,
                         const std::optional<std::map<std::string, std::string>>& slices,
                         bool strict, int threads) {
    cairn::RestoreRequest request = ToRestoreRequest(tensors, slices, false, std::nullopt);
    Check(CheckLocalPath(path));
    FileRestore restored;
    cairn::CheckpointSummary from;
    absl::Status status;
    {
      py::gil_scoped_release release;
      // The coordinator's lease keeps the step from retention while it is read.
      status = client_->ReadCommitted(
          job, step,
          [&](const cairn::CheckpointSummary& c) {
            return StreamToFile(c.prefix_uri, request, path, strict, threads, &restored);
          },
          &from);
    }
    Check(status);
    py::dict d = FileRestoreToDict(restored);
    d["step"] = from.step;
    return d;
  }

  void Pin(const std::string& job, int64_t step, bool pinned) {
    absl::Status status;
    {
      py::gil_scoped_release release;
      status = client_->Pin(job, step, pinned);
    }
    Check(status);
  }

  void Delete(const std::string& job, int64_t step, bool force) {
    absl::Status status;
    {
      py::gil_scoped_release release;
      status = client_->Delete(job, step, force);
    }
    Check(status);
  }

  py::list Jobs() {
    absl::StatusOr<std::vector<cairn::JobSummary>> result;
    {
      py::gil_scoped_release release;
      result = client_->ListJobs();
    }
    py::list out;
    for (const cairn::JobSummary& j : Unwrap(std::move(result))) {
      py::dict d;
      d["job"] = j.job;
      d["newest_step"] = j.newest_step ? py::object(py::int_(*j.newest_step)) : py::none();
      d["newest_committed_at"] =
          j.newest_step ? py::object(py::float_(j.newest_committed_at_micros / 1e6)) : py::none();
      d["committed"] = j.committed;
      d["pending"] = j.pending;
      d["aborted"] = j.aborted;
      d["bytes"] = j.bytes;
      out.append(d);
    }
    return out;
  }

  void SetPolicy(const std::string& job, int64_t keep_last, int64_t keep_every_steps,
                 double keep_every_hours, int64_t keep_best, const std::string& metric,
                 bool maximize) {
    cairn::RetentionPolicy policy;
    policy.keep_last = keep_last;
    policy.keep_every_steps = keep_every_steps;
    policy.keep_every_hours = keep_every_hours;
    policy.keep_best = keep_best;
    policy.metric = metric;
    policy.maximize = maximize;
    absl::Status status;
    {
      py::gil_scoped_release release;
      status = client_->SetPolicy(job, policy);
    }
    Check(status);
  }

  py::dict Gc(const std::string& job, bool dry_run) {
    absl::StatusOr<cairn::GcResult> result;
    {
      py::gil_scoped_release release;
      result = client_->Gc(job, dry_run);
    }
    cairn::GcResult gc = Unwrap(std::move(result));
    py::list decisions;
    for (const cairn::RetentionDecision& d : gc.decisions) {
      py::dict dd;
      dd["step"] = d.step;
      dd["keep"] = d.keep;
      dd["kept_by"] = d.kept_by;
      dd["reason"] = d.reason;
      decisions.append(dd);
    }
    py::dict out;
    out["decisions"] = decisions;
    out["deleted"] = gc.deleted;
    return out;
  }

  py::dict Rollback(const std::string& job, int64_t to_step, bool dry_run) {
    absl::StatusOr<cairn::RollbackResult> result;
    {
      py::gil_scoped_release release;
      result = client_->Rollback(job, to_step, dry_run);
    }
    cairn::RollbackResult r = Unwrap(std::move(result));
    py::dict out;
    out["deleted_steps"] = r.deleted_steps;
    out["aborted_steps"] = r.aborted_steps;
    return out;
  }

 private:
  explicit PyClient(std::unique_ptr<cairn::Client> client) : client_(std::move(client)) {}
  std::unique_ptr<cairn::Client> client_;
};

py::dict RestoreFromPrefix(const std::string& prefix_uri,
                           const std::optional<std::vector<std::string>>& tensors,
                           const std::optional<std::map<std::string, std::string>>& slices,
                           int threads, bool map_files, const std::optional<IntoMap>& into) {
  cairn::RestoreRequest request = ToRestoreRequest(tensors, slices, map_files, into);
  absl::StatusOr<cairn::RestoredTensors> result;
  {
    py::gil_scoped_release release;
    result = cairn::RestoreFromPrefix(prefix_uri, request, threads, nullptr,
                                      cairn::cmdline::StorageOptionsFromEnvironment());
  }
  return RestoredToDict(Unwrap(std::move(result)), into);
}

py::dict RestoreFileFromPrefix(const std::string& prefix_uri, const std::string& path,
                               const std::optional<std::vector<std::string>>& tensors,
                               const std::optional<std::map<std::string, std::string>>& slices,
                               bool strict, int threads) {
  cairn::RestoreRequest request = ToRestoreRequest(tensors, slices, false, std::nullopt);
  Check(CheckLocalPath(path));
  FileRestore restored;
  absl::Status status;
  {
    py::gil_scoped_release release;
    status = StreamToFile(prefix_uri, request, path, strict, threads, &restored);
  }
  Check(status);
  return FileRestoreToDict(restored);
}

}  // namespace

void DefineModule(py::module_& m) {
  m.doc() = "Cairn checkpoint client (C++ binding; use the `cairn` package)";

  static py::exception<std::runtime_error> error(m, "Error", PyExc_RuntimeError);
  g_error = error.ptr();

  py::class_<PySaveHandle>(m, "SaveHandle")
      .def("wait", &PySaveHandle::Wait)
      .def("done", &PySaveHandle::Done)
      .def_property_readonly("durable_after_micros", &PySaveHandle::DurableAfterMicros);

  py::class_<PyClient>(m, "Client")
      .def_static("connect", &PyClient::Connect, "coordinator"_a, "token"_a = "", "tls_ca"_a = "",
                  "tls_cert"_a = "", "tls_key"_a = "", "rpc_timeout_ms"_a = 60000,
                  "save_timeout_ms"_a = 3600000, "restore_threads"_a = 4)
      .def("save", &PyClient::Save, "job"_a, "step"_a, "shard"_a, "num_shards"_a, "tensors"_a,
           "metrics"_a)
      // The handle keeps its client alive.
      .def("save_async", &PyClient::SaveAsync, "job"_a, "step"_a, "shard"_a, "num_shards"_a,
           "tensors"_a, "metrics"_a, py::keep_alive<0, 1>())
      // The stream keeps its client alive.
      .def("save_stream", &PyClient::SaveStream, "job"_a, "step"_a, "shard"_a, "num_shards"_a,
           "metrics"_a, py::keep_alive<0, 1>())
      .def("list", &PyClient::List, "job"_a)
      .def("get", &PyClient::Get, "job"_a, "step"_a = py::none())
      .def("restore", &PyClient::Restore, "job"_a, "step"_a = py::none(), "tensors"_a = py::none(),
           "slices"_a = py::none(), "map_files"_a = false, "into"_a = py::none())
      .def("restore_to_file", &PyClient::RestoreToFile, "job"_a, "step"_a, "path"_a, "tensors"_a,
           "slices"_a, "strict"_a, "threads"_a)
      .def("pin", &PyClient::Pin, "job"_a, "step"_a, "pinned"_a = true)
      .def("set_policy", &PyClient::SetPolicy, "job"_a, "keep_last"_a = 0,
           "keep_every_steps"_a = 0, "keep_every_hours"_a = 0.0, "keep_best"_a = 0,
           "metric"_a = "", "maximize"_a = false)
      .def("gc", &PyClient::Gc, "job"_a, "dry_run"_a = false)
      .def("rollback", &PyClient::Rollback, "job"_a, "to_step"_a, "dry_run"_a = false)
      .def("delete", &PyClient::Delete, "job"_a, "step"_a, "force"_a = false)
      .def("jobs", &PyClient::Jobs);

  DefineStructure(m);
  DefineTorchBlock(m);
  DefineSaveStream(m);
  m.def("restore_file_from_prefix", &RestoreFileFromPrefix, "prefix_uri"_a, "path"_a, "tensors"_a,
        "slices"_a, "strict"_a, "threads"_a);
  m.def("restore_from_prefix", &RestoreFromPrefix, "prefix_uri"_a, "tensors"_a = py::none(),
        "slices"_a = py::none(), "threads"_a = 4, "map_files"_a = false, "into"_a = py::none());
}

}  // namespace cairn_python

PYBIND11_MODULE(_cairn, m) { cairn_python::DefineModule(m); }
