// The torch-free facts about the model zoo: names, published weight files, input statistics.
#include <doctest/doctest.h>

#include "stages/train/model_names.h"

using namespace petal;

TEST_CASE("a torchvision file name's sha256 prefix is read from its last dash, and names without one give \"\"") {
  CHECK(sha256_prefix_of("resnet18-f37072fd.pth") == "f37072fd");
  CHECK(sha256_prefix_of("efficientnet_b0_rwightman-3dd342df.pth") == "3dd342df");
  CHECK(sha256_prefix_of("model.pth").empty());
  CHECK(sha256_prefix_of("resnet18-F37072FD.pth").empty());  // torchvision writes lower case
  CHECK(sha256_prefix_of("resnet-18.pth").empty());          // too short to be a digest prefix
}

TEST_CASE("published ImageNet weights are torchvision URLs per architecture, none for small_cnn and lite0") {
  const auto resnet = imagenet_weights("resnet50");
  REQUIRE(resnet);
  CHECK(resnet->url == "https://download.pytorch.org/models/resnet50-0676ba61.pth");
  CHECK(resnet->sha256_prefix == "0676ba61");
  CHECK(imagenet_weights("densenet121")->key_format == "torchvision-densenet-legacy");
  CHECK_FALSE(imagenet_weights("small_cnn"));
  CHECK_FALSE(imagenet_weights("efficientnet_lite0"));
  for (const std::string& name : architecture_names()) {
    if (name != "small_cnn" && name != "efficientnet_lite0") CHECK_MESSAGE(imagenet_weights(name), name);
  }
}

TEST_CASE("input statistics follow where the weights came from: inception for lite0, ImageNet otherwise") {
  CHECK(default_normalization("efficientnet_lite0") == "inception");
  CHECK(default_normalization("resnet18") == "imagenet");
  CHECK(default_normalization("small_cnn") == "imagenet");
}
