#include "pipeline/cache/stage_key.h"

#include <petal/build_info.h>

#include "pipeline/dag/graph.h"
#include "pipeline/util/sha256.h"

namespace petal {

using nlohmann::json;

json stage_ingredients(const StageNode& node, const std::map<std::string, std::string>& input_keys,
                       const std::map<std::string, std::string>& external_digests) {
  json env = {{"petal", build_info::petal_version}};
  if (node.kind->uses_torch) env["torch"] = build_info::torch_version;
  return json{{"kind", node.kind->name},
              {"version", node.kind->version},
              {"params", node.config->params_json()},
              {"inputs", input_keys},
              {"external", external_digests},
              {"env", env}};
}

std::string stage_key(const json& ingredients) {
  return sha256_hex(std::string(kKeyFormat) + "\n" + ingredients.dump());
}

}  // namespace petal
