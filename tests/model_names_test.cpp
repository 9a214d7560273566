// The torch-free facts about the model zoo: names, published weight files, input statistics.
#include <doctest/doctest.h>

#include <algorithm>

#include "stages/train/model_names.h"

using namespace petal;

TEST_CASE("a torchvision file name's sha256 prefix is read from its last dash, and names without one give \"\"") {
  CHECK(sha256_prefix_of("resnet18-f37072fd.pth") == "f37072fd");
  CHECK(sha256_prefix_of("efficientnet_b0_rwightman-3dd342df.pth") == "3dd342df");
  CHECK(sha256_prefix_of("model.pth").empty());
  CHECK(sha256_prefix_of("resnet18-F37072FD.pth").empty());  // torchvision writes lower case
  CHECK(sha256_prefix_of("resnet-18.pth").empty());          // too short to be a digest prefix
}

TEST_CASE("published ImageNet weights are torchvision URLs per architecture, none for small_cnn and lite0/1/2") {
  const auto resnet = imagenet_weights("resnet50");
  REQUIRE(resnet);
  CHECK(resnet->url == "https://download.pytorch.org/models/resnet50-0676ba61.pth");
  CHECK(resnet->sha256_prefix == "0676ba61");
  CHECK(imagenet_weights("densenet121")->key_format == "torchvision-densenet-legacy");
  CHECK(imagenet_weights("vit_b_16")->key_format == "torchvision-vit-legacy");
  CHECK(imagenet_weights("inception_v3")->url == "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth");
  CHECK(imagenet_weights("maxvit_t")->sha256_prefix == "bc5ab103");
  CHECK_FALSE(imagenet_weights("small_cnn"));
  CHECK_FALSE(imagenet_weights("efficientnet_lite0"));
  CHECK_FALSE(imagenet_weights("efficientnet_lite1"));
  CHECK_FALSE(imagenet_weights("efficientnet_lite2"));
  for (const std::string& name : architecture_names()) {
    if (name != "small_cnn" && !is_efficientnet_lite(name)) CHECK_MESSAGE(imagenet_weights(name), name);
  }
}

TEST_CASE("the efficientnet_lite family is lite0, lite1 and lite2, all in the zoo") {
  for (const std::string name : {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}) {
    CAPTURE(name);
    CHECK(is_efficientnet_lite(name));
    CHECK(std::find(architecture_names().begin(), architecture_names().end(), name) != architecture_names().end());
  }
  CHECK_FALSE(is_efficientnet_lite("efficientnet_b0"));
  CHECK_FALSE(is_efficientnet_lite("efficientnet_lite3"));  // not in the zoo
  CHECK(architecture_list().find("efficientnet_lite0, efficientnet_lite1, efficientnet_lite2") != std::string::npos);
}

TEST_CASE("input statistics follow where the weights came from: inception for lite0/1/2 and inception_v3, ImageNet otherwise") {
  CHECK(default_normalization("efficientnet_lite0") == "inception");
  CHECK(default_normalization("efficientnet_lite1") == "inception");
  CHECK(default_normalization("efficientnet_lite2") == "inception");
  CHECK(default_normalization("efficientnet_b0") == "imagenet");
  CHECK(default_normalization("inception_v3") == "inception");
  CHECK(default_normalization("vit_b_16") == "imagenet");
  CHECK(default_normalization("resnet18") == "imagenet");
  CHECK(default_normalization("small_cnn") == "imagenet");
}

TEST_CASE("image sizes an architecture cannot take are named with the rule and the fix") {
  CHECK(image_size_problem("resnet18", 128, true).empty());
  CHECK(image_size_problem("vit_b_16", 224, true).empty());
  CHECK(image_size_problem("vit_b_16", 128, true).empty());  // position embedding interpolated
  CHECK(image_size_problem("vit_b_16", 100, true) ==
        "vit_b_16 needs an image_size that is a multiple of 16 (its patch size), got 100; 224 is its native size");
  CHECK(image_size_problem("maxvit_t", 224, true).empty());
  CHECK(image_size_problem("maxvit_t", 448, true).empty());
  CHECK(image_size_problem("maxvit_t", 128, true) ==
        "maxvit_t needs every stage's map to split into 7x7 partitions (an image_size that is a multiple of 224), "
        "got 128: stage 0 would be 32 px");
  CHECK(image_size_problem("inception_v3", 299, true).empty());
  CHECK(image_size_problem("inception_v3", 224, false).empty());  // no auxiliary classifier in eval / head-only
  CHECK(image_size_problem("inception_v3", 298, true).find("least 299, got 298") != std::string::npos);
  CHECK(image_size_problem("inception_v3", 64, false) ==
        "inception_v3 needs an image_size of at least 75, got 64; 299 is its native size");
}
