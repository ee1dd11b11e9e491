// Progress reporting for long client operations (save, restore, verify,
// convert): the library reports bytes, the caller decides what to show.
//
//   cairn::SaveShardOptions options;
//   options.progress = [](uint64_t done, uint64_t total) { /* draw a bar */ };
#ifndef CAIRN_CLIENT_PROGRESS_H_
#define CAIRN_CLIENT_PROGRESS_H_

#include <cstdint>
#include <functional>

namespace cairn {

// Called with the bytes processed so far and the total the operation expects
// to process. Contract, for every operation that takes one:
//  - the first call is (0, total), before any data moves, and after success
//    the last call is (total, total);
//  - `done` never decreases and never exceeds `total`; `total` is fixed;
//  - calls may come from any thread (e.g. restore's reader pool) but never
//    two at once, so the callback needs no lock of its own;
//  - it is called often (per chunk or per tensor): it should return quickly.
// An empty function (the default everywhere) reports nothing.
using ProgressFn = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

}  // namespace cairn

#endif  // CAIRN_CLIENT_PROGRESS_H_
