#pragma once
// The worker side of `petal predict`:
//
//   petal-worker predict --model DIR [--threads N] [--batch-size B] IMAGE...
//
// DIR is a train/finetune output or an exported MLflow model folder (stages/train/trained_model.h).
// Prints one JSON document on stdout:
//   {"architecture": ..., "classes": [...], "predictions": [{"file": F, "probabilities": [...]} |
//                                                          {"file": F, "error": "..."}]}
// Exit status 0 when the model loaded (per-image errors are in the JSON), 1 when it did not
// (the reason on stderr), 2 for a malformed command line.
namespace petal::evaluate {

int run_predict_command(int argc, char** argv);

}  // namespace petal::evaluate
