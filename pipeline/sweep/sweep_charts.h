#pragma once
// The sweep's comparison charts, drawn by petal-data-worker (OpenCV stays out of `petal`):
//   objective.png          the objective per trial, best first, the best highlighted
//   validation_curves.png  every trial's per-epoch validation metric, with a key below
// from the request that chart_request() (sweep_summary.h) builds.
#include <filesystem>
#include <nlohmann/json.hpp>

namespace petal {

// Writes both images into `out_dir`; throws std::exception on a malformed request or a failed write.
void draw_sweep_charts(const nlohmann::json& request, const std::filesystem::path& out_dir);

}  // namespace petal
