// The benchmark's figures (see main.cc for what each measures).
#ifndef CAIRN_BENCH_CHECKPOINT_FIGURES_H_
#define CAIRN_BENCH_CHECKPOINT_FIGURES_H_

#include <string>
#include <vector>

#include "bench/checkpoint/bench_util.h"
#include "bench/checkpoint/torch_baseline.h"

namespace cairn_bench {

// 1-3: save and restore against write()/read() (and torch, if given).
void FigureSaveRestore(const Flags& f, std::vector<WorkerState>& state, const std::string& storage,
                       TorchBaseline* torch);
// 4: how long SaveShardAsync blocks.
void FigureAsync(const Flags& f, std::vector<WorkerState>& state);
// 5: bytes read to restore one tensor of many.
void FigurePartial(const Flags& f, const std::string& storage);
// 6: writer peak memory per shard size.
void FigureMemory(const Flags& f);
// 7: per-tensor cost of a save of many tiny tensors.
void FigureScale(const Flags& f);

}  // namespace cairn_bench

#endif  // CAIRN_BENCH_CHECKPOINT_FIGURES_H_
