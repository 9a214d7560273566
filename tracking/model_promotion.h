#pragma once
// The register stage's server side: a run's logged model becomes a model version of a registered
// model, and gets `champion` or `challenger` by the rule in stages/register/promotion.h.
#include "pipeline/dag/run_tracking.h"
#include "tracking/mlflow_client.h"

namespace petal::mlflow {

// Idempotent: a model whose digest (version tag petal.model_digest) is already registered is not
// registered again; its alias is decided again. The run's artifacts are checked for the model
// (its MLmodel file) and uploaded from `request.local_model_dir` when missing, so the version's
// source always resolves. Throws MlflowError / HttpUnreachable.
RegistrationResult register_and_promote(Client& client, const RunInfo& run, const ModelRegistration& request);

}  // namespace petal::mlflow
