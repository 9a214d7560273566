#pragma once
#include "pipeline/dag/stage_kind.h"

namespace petal {

// evaluate: scores the trained model on held-out splits and exports it as an MLflow model.
// Output (all logged as MLflow artifacts, metrics as <split>_<name>):
//   metrics.json                     flat {test_accuracy: ..., val_f1: ..., test_f1_<class>: ...}
//   report.json                      per split: per-class precision/recall/F1/support, matrix, ...
//   reports/<split>/confusion_matrix.csv, confusion_matrix_normalized.csv, confusion_matrix.png,
//                   confusion_matrix_normalized.png, misclassified.png
//   reports/gradcam/<n>.png          the first split's images: original + the top classes' Grad-CAM
//   reports/training_curves.png      loss, accuracy, macro-F1 per epoch (train vs val)
//   model/                           MLflow model (python_function flavor; MLmodel, code/, data/)
StageKind make_evaluate_stage();

}  // namespace petal
