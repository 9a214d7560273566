// The augment stage's implementation, run by petal-data-worker (the spec is augment_stage.cpp).
#include "stages/augment/augment_impl.h"


#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <sstream>

#include "pipeline/util/error.h"
#include "stages/augment/augment_config.h"
#include "stages/augment/cache_builder.h"
#include "stages/augment/image_cache.h"
#include "stages/augment/preview_grid.h"
#include "stages/augment/split_table.h"

namespace petal {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path split_input(const StageContext& ctx) {
  for (const auto& [name, dir] : ctx.inputs) {
    if (fs::exists(dir / "split.tsv")) return dir;
  }
  throw PetalError("augment needs a split stage as input (one whose output has split.tsv); its inputs: " +
                   std::to_string(ctx.inputs.size()));
}

std::string megabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MB", bytes / 1e6);
  return text;
}

}  // namespace

void run_augment_stage(StageContext& ctx) {
  const augment::AugmentSettings settings = augment::AugmentSettings::from_params(ctx.params);
  augment::SplitTable table;
  try {
    table = augment::read_split_table(split_input(ctx));
  } catch (const std::runtime_error& e) {
    throw PetalError(std::string("augment: ") + e.what());
  }

  // The worker set OpenCV's thread count to petal's thread budget ($PETAL_THREADS or the cores):
  // decode with that many threads.
  augment::CacheBuildOptions options;
  options.short_side = settings.cache_short_side;
  options.upscale = settings.upscale;
  options.threads = std::max(1, ctx.threads);
  const augment::CacheBuildStats stats = augment::build_image_cache(table, ctx.output_dir, options, ctx.cancelled);
  settings.write(ctx.output_dir);

  const augment::ImageCache cache(ctx.output_dir);
  const auto indices = augment::preview_indices(cache, settings.seed, 16);
  std::vector<std::string> written;
  for (const json& entry : ctx.params.at("resolved").at("previews")) {
    const augment::Policy policy = augment::Policy::from_json(entry);
    const std::string file = "preview_" + policy.name + ".png";
    if (!indices.empty()) {
      augment::write_png_rgb(ctx.output_dir / file, augment::policy_preview(cache, indices, policy, settings));
      ctx.report.artifact(file);
      written.push_back(file);
    }
  }
  ctx.report.artifact("augment.json");
  ctx.report.metric("images_cached", static_cast<double>(stats.images));
  ctx.report.metric("cache_bytes", static_cast<double>(stats.bytes));
  ctx.report.metric("decode_seconds", stats.seconds);
  ctx.report.metric("decode_images_per_second", stats.seconds > 0 ? stats.images / stats.seconds : 0.0);
  std::ostringstream note;
  note << stats.images << " images decoded into a " << megabytes(static_cast<double>(stats.bytes)) << " cache (short side "
       << settings.cache_short_side << (settings.upscale ? "" : " at most") << ") in " << std::fixed << std::setprecision(2) << stats.seconds << " s on "
       << options.threads << " threads; policy " << settings.policy.name << ", " << settings.image_size << " px";
  ctx.report.note(note.str());
}

}  // namespace petal
