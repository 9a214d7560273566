"""Python side of the model parity tests (tests/models_test.cpp).

Builds one architecture with the reference implementation (torchvision 0.14, or the
efficientnet_lite_pytorch package for efficientnet_lite0) from a fixed seed, perturbs every
BatchNorm's affine parameters and running statistics (so eval-mode BatchNorm is really exercised,
not left at its identity initialisation), and writes to --out:
  weights.pth  model.state_dict() saved by torch.save (zip format, an OrderedDict)
  io.pth       {"input": x, "output": model.eval()(x), "features": pooled features} saved the same way
petal loads both with its own state-dict reader and compares its eval output.

usage: make_reference.py --arch NAME --num-classes N --size S --batch B --seed K --out DIR
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


def perturb_batchnorm(model, generator):
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                n = module.num_features
                module.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", required=True, choices=sorted(BUILDERS))
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed + 1)
    model, features_fn = BUILDERS[args.arch](args.num_classes)
    perturb_batchnorm(model, generator)
    model.eval()
    x = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    with torch.no_grad():
        output = model(x)
        features = features_fn(model, x)
    os.makedirs(args.out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(args.out, "weights.pth"))
    torch.save(collections.OrderedDict(input=x, output=output, features=features), os.path.join(args.out, "io.pth"))


if __name__ == "__main__":
    main()
