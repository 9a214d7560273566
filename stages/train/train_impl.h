#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// The worker side of the train and finetune stages (stages/train/train_stage.cpp declares them).
// Output folder of both:
//   model.pt       the trained weights: a state dict Python's torch.load reads (LibTorch pickle format)
//   model.json     what rebuilds the network: architecture, head, classes, preprocessing
//   history.csv    per-epoch metrics;  training.json: the run's summary and parameter groups
//   classes.txt    class names, one per line, in label order
void run_train_stage(StageContext& ctx);
void run_finetune_stage(StageContext& ctx);

}  // namespace petal
