#include "stages/augment/augment_stage.h"

#include <stdexcept>

#include "pipeline/exec/worker_client.h"
#include "pipeline/util/sha256.h"
#include "stages/augment/policy_presets.h"

namespace petal {

using nlohmann::json;

namespace {

// The policies the worker needs, resolved here because only the core parses the TOML presets:
// the selected one with the user's overrides, and each preset for the preview grids.
json resolved_policies(const json& params) {
  const std::string selected = params.at("policy").get<std::string>();
  const auto overrides = params.at("overrides").get<std::vector<std::string>>();
  json previews = json::array();
  for (const char* name : {"light", "medium", "deep"}) {
    if (name != selected) previews.push_back(augment::preset_policy(name).to_json());
  }
  const json chosen = augment::resolve_policy(selected, overrides).to_json();
  previews.push_back(chosen);
  return json{{"policy", chosen}, {"previews", previews}};
}

void run_augment(StageContext& ctx) {
  json params = ctx.params;
  params["resolved"] = resolved_policies(ctx.params);
  StageContext worker_ctx{ctx.stage_name, params,       ctx.inputs,    ctx.output_dir,
                          ctx.log_file,   ctx.base_dir, ctx.cancelled, ctx.report};
  worker_ctx.threads = ctx.threads;
  worker_ctx.resume_dir = ctx.resume_dir;
  run_in_worker(worker_ctx, "augment", "petal-data-worker");
}

}  // namespace

StageKind make_augment_stage() {
  StageKind kind;
  kind.name = "augment";
  // The presets' hash is part of the version: editing them invalidates cached outputs. Bump the
  // number when the cache format or an op's implementation changes.
  kind.version = "augment/2+" + sha256_hex(augment::presets_toml()).substr(0, 12);
  kind.summary = "decode images once into a memory-mapped cache; augmentation policy for the loader";
  kind.default_needs = {"split"};
  kind.params = {
      ParamSpec::choice("policy", augment::policy_names(), "medium",
                        "augmentation preset applied by the loader to training samples"),
      ParamSpec::strings("overrides", {},
                         "per-op changes to the policy, \"op.field=value\" with field probability or magnitude, "
                         "e.g. [\"rotate.probability=0.3\", \"hue.magnitude=0.1\"]"),
      ParamSpec::integer("image_size", 224, "side of the square training and evaluation images").at_least(16).at_most(4096),
      ParamSpec::integer("eval_resize", 0,
                         "short side before the evaluation centre crop; 0 = image_size * 256 / 224 (256 for 224)")
          .at_least(0)
          .at_most(8192),
      ParamSpec::integer("cache_short_side", 0, "short side of the cached images; 0 = the evaluation resize")
          .at_least(0)
          .at_most(8192),
      ParamSpec::boolean("upscale", false,
                         "also enlarge images smaller than cache_short_side (otherwise they are cached at their own "
                         "size and enlarged once, by the crop)"),
      ParamSpec::integer("seed", 0, "seed of the augmentations (a sample's augmentation depends on seed, epoch, index)")
          .at_least(0),
  };
  kind.check = [](const json& params) {
    std::vector<std::pair<std::string, std::string>> problems;
    for (const std::string& error : augment::override_errors(params.at("overrides").get<std::vector<std::string>>())) {
      problems.emplace_back("overrides", "has an invalid " + error);
    }
    const long long size = params.at("image_size").get<long long>();
    const long long resize = params.at("eval_resize").get<long long>();
    if (resize != 0 && resize < size) {
      problems.emplace_back("eval_resize", "must be 0 or at least image_size (" + std::to_string(size) + "), got " +
                                               std::to_string(resize));
    }
    return problems;
  };
  kind.run = run_augment;
  return kind;
}

}  // namespace petal
