#pragma once
// What keeps the ranks of a data-parallel run identical: the same start (rank 0's weights), the
// same gradients every step (all-reduced, each rank weighted by its share of the global batch),
// and the same BatchNorm statistics (averaged before validation).
//
// Equivalence with one process: with every rank holding n_r of the global batch's N samples and
// its loss a mean over its own samples, sum_r (n_r / N) * grad_r is the gradient of the global
// batch's mean loss, so the update equals the one-process update. What differs: BatchNorm
// normalises each shard with its own statistics while training, dropout and MixUp/CutMix draw per
// shard, and class-weighted losses are weighted per shard.
#include <torch/nn/module.h>

#include <vector>

#include "stages/train/distributed/collective.h"

namespace petal::train {

// Every trainable parameter gets the weighted sum of the ranks' gradients (one fused all-reduce).
// A parameter without a gradient on this rank contributes zeros.
void all_reduce_gradients(const std::vector<at::Tensor>& parameters, double share, Collective& collective);

// Rank 0's parameters and buffers, copied to every rank.
void broadcast_module_state(torch::nn::Module& module, Collective& collective);

// Floating-point buffers (BatchNorm running statistics) become their mean over ranks.
void average_buffers(torch::nn::Module& module, Collective& collective);

// The element-wise sum over ranks of a few numbers (counts, loss sums).
std::vector<double> sum_over_ranks(const std::vector<double>& values, Collective& collective);

}  // namespace petal::train
