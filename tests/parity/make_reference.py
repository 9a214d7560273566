"""Python side of the model parity tests (tests/models_test.cpp).

Builds one architecture with the reference implementation (torchvision 0.14, or the
efficientnet_lite_pytorch package for efficientnet_lite0/1/2) from a fixed seed, sets every
BatchNorm's running statistics from a calibration batch and perturbs its affine parameters (so
eval-mode BatchNorm is really exercised and outputs depend on the input), and writes to --out:
  weights.pth  model.state_dict() saved by torch.save (zip format, an OrderedDict)
  io.pth       {"input": x, "output": model.eval()(x), "features": pooled features} saved the same way
  grads.pth    with --step: a few parameters' gradients after one training step (training_step_gradients)
petal loads them with its own state-dict reader and compares its eval output and gradients.

With --weights FILE the model instead loads FILE (published weights, strictly, no calibration) and
x is image-like (pretrained_input); only io.pth is written, since petal reads FILE itself.

usage: make_reference.py --arch NAME --num-classes N --size S --batch B --seed K --out DIR
                         [--step train|eval | --weights FILE]
"""
import argparse
import collections
import os

import torch

BUILDERS = {}  # name -> function(num_classes) -> (model, features_fn)


def builder(name):
    def register(function):
        BUILDERS[name] = function
        return function
    return register


# Builders are added below by architecture (each returns (model, features_fn), where
# features_fn(model, x) gives the head's input for x, in eval mode).


# -- mobilenet_v2, efficientnet_b0, efficientnet_lite0/1/2 (stages/train/models/{mobilenet_v2,efficientnet}.cpp) --

def _pooled_torchvision_features(model, x):
    # torchvision's MobileNetV2 and EfficientNet: features -> adaptive avg pool (1x1) -> flatten.
    return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(model.features(x), 1), 1)


@builder("mobilenet_v2")
def _mobilenet_v2(num_classes):
    import torchvision
    return torchvision.models.mobilenet_v2(num_classes=num_classes), _pooled_torchvision_features


@builder("efficientnet_b0")
def _efficientnet_b0(num_classes):
    import torchvision
    return torchvision.models.efficientnet_b0(num_classes=num_classes), _pooled_torchvision_features


def _efficientnet_lite(variant):
    # The package's from_name builds its convs with static TF "SAME" padding for the variant's own
    # image_size (224, 240, 260), whatever --size is; petal replicates that.
    def build(num_classes):
        from efficientnet_lite_pytorch import EfficientNet

        def features(model, x):  # the input of model._dropout / model._fc
            return torch.flatten(model._avg_pooling(model.extract_features(x)), 1)

        return EfficientNet.from_name(f"efficientnet-lite{variant}", num_classes=num_classes), features
    return build


for _variant in (0, 1, 2):
    builder(f"efficientnet_lite{_variant}")(_efficientnet_lite(_variant))


# -- resnet, vgg, densenet, small_cnn (stages/train/models/{resnet,vgg,densenet,small_cnn}.cpp) --

def _resnet_features(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


@builder("resnet18")
def build_resnet18(num_classes):
    import torchvision
    return torchvision.models.resnet18(num_classes=num_classes), _resnet_features


@builder("resnet50")
def build_resnet50(num_classes):
    import torchvision
    return torchvision.models.resnet50(num_classes=num_classes), _resnet_features


@builder("vgg16_bn")
def build_vgg16_bn(num_classes):
    import torchvision

    def features(model, x):
        return model.classifier[:6](torch.flatten(model.avgpool(model.features(x)), 1))
    return torchvision.models.vgg16_bn(num_classes=num_classes), features


@builder("densenet121")
def build_densenet121(num_classes):
    import torchvision

    def features(model, x):
        out = torch.nn.functional.relu(model.features(x))
        return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(out, (1, 1)), 1)
    return torchvision.models.densenet121(num_classes=num_classes), features


class SmallCnn(torch.nn.Module):
    """The twin of petal's small_cnn: 4 x ([Conv3x3-BN-ReLU] x 2, MaxPool 2), widths 32/64/128/256,
    global average pool, Sequential(Dropout(0.2), Linear) head."""

    def __init__(self, num_classes, dropout=0.2):
        super().__init__()
        stages, width_in = [], 3
        for width in (32, 64, 128, 256):
            layers = []
            for c_in in (width_in, width):
                layers += [torch.nn.Conv2d(c_in, width, 3, padding=1, bias=False), torch.nn.BatchNorm2d(width),
                           torch.nn.ReLU(inplace=True)]
            stages.append(torch.nn.Sequential(*layers, torch.nn.MaxPool2d(2, 2)))
            width_in = width
        self.features = torch.nn.Sequential(*stages)
        self.classifier = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(256, num_classes))
        for m in self.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.constant_(m.weight, 1)
                torch.nn.init.constant_(m.bias, 0)

    def embed(self, x):
        return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1)), 1)

    def forward(self, x):
        return self.classifier(self.embed(x))


@builder("small_cnn")
def build_small_cnn(num_classes):
    return SmallCnn(num_classes), lambda model, x: model.embed(x)

# -- end of resnet, vgg, densenet, small_cnn --


@builder("convnext_tiny")
def _convnext_tiny(num_classes):
    import torchvision
    model = torchvision.models.convnext_tiny(num_classes=num_classes)
    # Layer scales start at 1e-6, which would leave every block a near-identity: give them sizes a
    # trained network has, so the blocks' branches really count in the comparison.
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, torchvision.models.convnext.CNBlock):
                block.layer_scale.copy_(0.5 + 0.2 * torch.randn(block.layer_scale.shape, generator=generator))

    def features(model, x):  # avg pool, LayerNorm2d, flatten: the input of classifier[2]
        return model.classifier[:2](model.avgpool(model.features(x)))

    return model, features


# -- vit_b_16, maxvit_t, inception_v3 (stages/train/models/{vision_transformer,maxvit,inception}.cpp) --

def _vision_transformer_class():
    import torchvision
    from torchvision.models.vision_transformer import interpolate_embeddings

    class AnySizeViT(torchvision.models.VisionTransformer):
        """torchvision's ViT-B/16 built for 224 px. Other input sizes go through a second ViT built
        for that size, loaded with torchvision's own interpolate_embeddings of this one's state:
        the reference for petal's position embedding interpolation."""

        def resized(self, size):
            if size == self.image_size:
                return self
            other = torchvision.models.VisionTransformer(
                image_size=size, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072,
                num_classes=self.num_classes)
            other.load_state_dict(interpolate_embeddings(size, 16, self.state_dict()))
            return other.train(self.training)

        def forward(self, x):
            model = self.resized(x.shape[-1])
            return super().forward(x) if model is self else model(x)

        def class_token_features(self, x):  # the input of heads.head
            model = self.resized(x.shape[-1])
            tokens = model._process_input(x)
            tokens = torch.cat([model.class_token.expand(x.shape[0], -1, -1), tokens], dim=1)
            return model.encoder(tokens)[:, 0]

    return AnySizeViT


@builder("vit_b_16")
def _vit_b_16(num_classes):
    model = _vision_transformer_class()(image_size=224, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768,
                                        mlp_dim=3072, num_classes=num_classes)
    # torchvision zero-initialises the head, which would make every output 0: a random one instead.
    with torch.no_grad():
        model.heads.head.weight.normal_(0.0, 0.05)
        model.heads.head.bias.normal_(0.0, 0.05)
    return model, lambda model, x: model.class_token_features(x)


@builder("maxvit_t")
def _maxvit_t(num_classes):
    import torchvision
    model = torchvision.models.maxvit_t(num_classes=num_classes)
    # petal's heads always have a bias; torchvision's classifier[5] has none (the head is replaced by design).
    model.classifier[5] = torch.nn.Linear(512, num_classes)

    def features(model, x):  # pool, flatten, LayerNorm, Linear, Tanh: the input of classifier[5]
        x = model.stem(x)
        for block in model.blocks:
            x = block(x)
        return model.classifier[:5](x)

    return model, features


@builder("inception_v3")
def _inception_v3(num_classes):
    import torchvision
    model = torchvision.models.inception_v3(num_classes=num_classes, aux_logits=True, transform_input=False,
                                            init_weights=True)
    # torchvision's Dropout(0.5) before fc is part of petal's head (its dropout; 0 in these tests).
    model.dropout = torch.nn.Identity()

    def features(model, x):  # Mixed_7c's output, average-pooled and flattened: the input of fc
        captured = {}
        hook = model.Mixed_7c.register_forward_hook(lambda module, inputs, output: captured.update(out=output))
        model(x)
        hook.remove()
        return torch.flatten(model.avgpool(captured["out"]), 1)

    return model, features


def training_step_gradients(model, x, labels, mode):
    """One training step's gradients: cross-entropy on `labels` (plus 0.4 x the auxiliary
    classifier's, as petal's trainer adds it) backpropagated in `mode` ("train": batch statistics
    and the auxiliary classifier; "eval": running statistics, no stochastic depth, for networks
    whose training mode draws random numbers). Returns {name: grad} for a few parameters spread
    over the network: the first, one a quarter and half way through, the last of the backbone and
    the head's weight. In float64: training-mode BatchNorm over a few values per channel (inception's
    auxiliary classifier sees 1x1 maps) makes float32 gradients of this random network differ by
    percents between PyTorch's own runs with 1 and 2 threads, so float32 could not tell a wrong
    backward from rounding."""
    resized = hasattr(model, "resized") and model.resized(x.shape[-1]) is not model
    if resized:  # vit_b_16 at another size: step the network that really runs (its own position embedding)
        model = model.resized(x.shape[-1])
    model.double()
    x = x.double()
    model.train(mode == "train")
    model.zero_grad()
    output = model(x)
    if isinstance(output, tuple):  # inception_v3 in training mode: (logits, aux_logits)
        loss = torch.nn.functional.cross_entropy(output[0], labels) + 0.4 * torch.nn.functional.cross_entropy(output[1], labels)
    else:
        loss = torch.nn.functional.cross_entropy(output, labels)
    loss.backward()
    named = [(name, p) for name, p in model.named_parameters()
             if p.grad is not None and not (resized and name == "encoder.pos_embedding")]
    picks = sorted({0, len(named) // 4, len(named) // 2, len(named) - 3, len(named) - 2})
    return collections.OrderedDict(("grad:" + named[i][0], named[i][1].grad.detach().clone()) for i in picks)


def calibrate_batchnorm(model, calibration, generator):
    """Sets every BatchNorm's running statistics from a calibration batch (as if trained on it) and
    then perturbs its affine parameters. With their initial statistics (mean 0, variance 1) deep
    random networks map every input to nearly the same output, which would make the comparison
    blind. Calibrating in training mode (dropout and stochastic depth active) leaves statistics that
    differ from what eval mode sees, which keeps the eval outputs strongly input-dependent (for
    efficientnet_b0 they grow to thousands: the tests compare relative to the output's scale)."""
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for module in batchnorms:
        module.momentum = 1.0  # running statistics := this batch's statistics
    model.train()
    # inception_v3's auxiliary classifier runs in training mode and needs 299 px inputs: below
    # that it sits out the calibration (its statistics stay initial; eval never uses it).
    auxiliary = getattr(model, "AuxLogits", None)
    if auxiliary is not None and calibration.shape[-1] < 299:
        model.AuxLogits = None
    with torch.no_grad():
        model(calibration)
    if auxiliary is not None:
        model.AuxLogits = auxiliary
    for module in batchnorms:
        module.momentum = 0.1
        with torch.no_grad():
            n = module.num_features
            module.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=generator))
            module.bias.copy_(0.1 * torch.randn(n, generator=generator))


def pretrained_input(batch, size, generator):
    """Image-like inputs for published weights: smooth colour fields (8 x 8 random colours,
    bilinearly upsampled) in [-1, 1], the range of the inception normalisation the EfficientNet-Lite
    weights expect. Pure noise would be far from anything the weights were trained on."""
    coarse = torch.rand(batch, 3, 8, 8, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return smooth * 2 - 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", required=True, choices=sorted(BUILDERS))
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--step", choices=["train", "eval"],
                        help="also write grads.pth: one training step's gradients on labels 1, 7, ... (see training_step_gradients)")
    parser.add_argument("--weights", help="load this state dict (strictly) instead of calibrating random weights")
    args = parser.parse_args()
    if args.weights and args.step:
        parser.error("--weights and --step do not combine")

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed + 1)
    model, features_fn = BUILDERS[args.arch](args.num_classes)
    if args.weights:
        model.load_state_dict(torch.load(args.weights, map_location="cpu"), strict=True)
        x = pretrained_input(args.batch, args.size, generator)
    else:
        calibrate_batchnorm(model, torch.randn(8, 3, args.size, args.size, generator=generator), generator)
        x = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    model.eval()
    with torch.no_grad():
        output = model(x)
        features = features_fn(model, x)
    os.makedirs(args.out, exist_ok=True)
    if not args.weights:
        torch.save(model.state_dict(), os.path.join(args.out, "weights.pth"))
    torch.save(collections.OrderedDict(input=x, output=output, features=features), os.path.join(args.out, "io.pth"))
    if args.step:
        labels = torch.tensor([(1 + 6 * i) % args.num_classes for i in range(args.batch)])
        gradients = training_step_gradients(model, x, labels, args.step)
        gradients["labels"] = labels
        torch.save(gradients, os.path.join(args.out, "grads.pth"))


if __name__ == "__main__":
    main()
