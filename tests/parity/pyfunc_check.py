"""Python side of the MLflow model tests (tests/mlflow_model_test.cpp, tests/pyfunc_preprocess_test.cpp).

usage:
  pyfunc_check.py images OUT_DIR
      writes test images: a large JPEG (DCT-scaled decode), a small JPEG, a progressive JPEG, an
      RGB PNG, an RGBA PNG, a portrait JPEG, an EXIF-rotated JPEG (orientation 6) and a grayscale
      JPEG; OUT_DIR/images.json lists them
  pyfunc_check.py trained OUT_DIR [CASE,CASE,...]
      writes one trained-model folder per case (default: all but vgg16_bn, a 530 MB state dict) (model.pt with petal's key names, model.json,
      classes.txt) and OUT_DIR/cases.json. Backbones come from make_reference.py's builders (the
      networks tests/models_test.cpp proves equal to petal's); head keys are written here from
      the rule in stages/train/models/head.cpp, independently of the loader
  pyfunc_check.py predict TRAINED_DIR MODELS_DIR IMAGES_DIR OUT_JSON
      for each case: mlflow.pyfunc.load_model(MODELS_DIR/<case>) (strict key matching), predicts
      the images (as bytes, a path and a base64 string), checks columns, labels and probabilities;
      for linear heads also compares with make_reference.py's network on the same weights and
      inputs (difference must be 0); writes {case: {"errors": [...], ...}} to OUT_JSON
  pyfunc_check.py mlmodel MODEL_DIR OUT_JSON
      MLmodel read by yaml.safe_load and by mlflow.models.Model.load; requirements checked against
      this environment; written as JSON
  pyfunc_check.py preprocess SPEC_JSON IMAGES_DIR CPP_DIR OUT_JSON
      petal_pyfunc's preprocessing of every image against petal's C++ tensors CPP_DIR/<image>.f32
      (float32 CHW); writes per image the max abs difference, the shape and the decode flag used
"""
import base64
import collections
import json
import math
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(SOURCE_DIR, "stages", "evaluate", "pyfunc"))


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# images

def natural_image(height, width, seed, channels=3):
    """Smooth gradients plus texture, so resampling and JPEG both have real work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = []
    for c in range(channels):
        fx, fy = rng.uniform(2, 9, size=2)
        plane = 127 + 80 * np.sin(x / width * fx + c) * np.cos(y / height * fy) + rng.normal(0, 18, (height, width))
        planes.append(plane)
    return np.clip(np.stack(planes, axis=2), 0, 255).astype(np.uint8)


def make_images(out_dir):
    from PIL import Image
    os.makedirs(out_dir, exist_ok=True)
    images = {}

    def save(name, array, **options):
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[2]]
        Image.fromarray(array[:, :, 0] if mode == "L" else array, mode).save(os.path.join(out_dir, name), **options)
        images[name] = {"width": array.shape[1], "height": array.shape[0]}

    save("large.jpg", natural_image(1200, 1600, 1), quality=92)                  # 1/8 DCT scaling at 96 px
    save("small.jpg", natural_image(60, 80, 2), quality=90)                      # below cache_short_side
    save("progressive.jpg", natural_image(450, 600, 3), quality=85, progressive=True)
    save("image.png", natural_image(200, 300, 4))
    save("alpha.png", natural_image(150, 150, 5, channels=4))
    save("portrait.jpg", natural_image(400, 150, 6), quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save("exif_rotated.jpg", natural_image(480, 640, 7), quality=90, exif=exif.tobytes())
    save("gray.jpg", natural_image(256, 256, 8, channels=1), quality=90)
    write_json(os.path.join(out_dir, "images.json"), images)
    return images


# ---------------------------------------------------------------------------------------------
# trained-model folders

# One case per (architecture, head shape) the tests cover. head: model.json's head spec.
CASES = {
    "resnet18": {"architecture": "resnet18", "head": {"hidden": [], "batch_norm": True, "dropout": 0.0}},
    "resnet18_mlp": {"architecture": "resnet18", "head": {"hidden": [32], "batch_norm": True, "dropout": 0.3}},
    "resnet18_dropout": {"architecture": "resnet18", "head": {"hidden": [], "batch_norm": True, "dropout": 0.5}},
    "mobilenet_v2": {"architecture": "mobilenet_v2", "head": {"hidden": [], "batch_norm": True, "dropout": -1.0}},
    "efficientnet_lite0": {"architecture": "efficientnet_lite0", "head": {"hidden": [], "batch_norm": True, "dropout": -1.0},
                           "normalization": "inception"},
    "efficientnet_lite0_mlp": {"architecture": "efficientnet_lite0", "head": {"hidden": [16], "batch_norm": False, "dropout": -1.0},
                               "normalization": "inception"},
    "efficientnet_lite1": {"architecture": "efficientnet_lite1", "head": {"hidden": [], "batch_norm": True, "dropout": -1.0},
                           "normalization": "inception"},
    "efficientnet_lite2_mlp": {"architecture": "efficientnet_lite2", "head": {"hidden": [16], "batch_norm": True, "dropout": -1.0},
                               "normalization": "inception"},
    "small_cnn": {"architecture": "small_cnn", "head": {"hidden": [], "batch_norm": True, "dropout": -1.0}},
    "small_cnn_mlp": {"architecture": "small_cnn", "head": {"hidden": [24, 12], "batch_norm": True, "dropout": 0.0}},
    "resnet50": {"architecture": "resnet50", "head": {"hidden": [], "batch_norm": True, "dropout": 0.0}},
    "densenet121": {"architecture": "densenet121", "head": {"hidden": [], "batch_norm": True, "dropout": 0.0}},
    "efficientnet_b0": {"architecture": "efficientnet_b0", "head": {"hidden": [], "batch_norm": True, "dropout": -1.0}},
    "convnext_tiny": {"architecture": "convnext_tiny", "head": {"hidden": [48], "batch_norm": True, "dropout": 0.1}},
    "vgg16_bn": {"architecture": "vgg16_bn", "head": {"hidden": [64], "batch_norm": True, "dropout": 0.2}},
    # image_size: the architectures with a size rule (stages/train/model_names.h); vit_b_16 at 64 px
    # has its 224 px position embedding resized by the loader.
    "vit_b_16": {"architecture": "vit_b_16", "head": {"hidden": [], "batch_norm": True, "dropout": 0.0}, "image_size": 64},
    "maxvit_t": {"architecture": "maxvit_t", "head": {"hidden": [32], "batch_norm": True, "dropout": 0.1}, "image_size": 224},
    "inception_v3": {"architecture": "inception_v3", "head": {"hidden": [], "batch_norm": True, "dropout": 0.0},
                     "image_size": 96, "normalization": "inception"},
}

# Where petal puts each architecture's head, how a plain linear head is wrapped, its default
# dropout and the head's input width (stages/train/models/*.cpp).
HEADS = {
    "resnet18": ("fc", "linear", 0.0, 512),
    "resnet50": ("fc", "linear", 0.0, 2048),
    "densenet121": ("classifier", "linear", 0.0, 1024),
    "vgg16_bn": ("classifier.6", "linear", 0.0, 4096),
    "mobilenet_v2": ("classifier", "dropout_linear", 0.2, 1280),
    "efficientnet_b0": ("classifier", "dropout_linear", 0.2, 1280),
    "efficientnet_lite0": ("_fc", "linear", 0.2, 1280),
    "efficientnet_lite1": ("_fc", "linear", 0.2, 1280),
    "efficientnet_lite2": ("_fc", "linear", 0.3, 1280),
    "small_cnn": ("classifier", "dropout_linear", 0.2, 256),
    "convnext_tiny": ("classifier.2", "linear", 0.0, 768),
    "vit_b_16": ("heads.head", "linear", 0.0, 768),
    "maxvit_t": ("classifier.5", "linear", 0.0, 512),
    "inception_v3": ("fc", "linear", 0.5, 2048),
}

# A class name that needs quoting in YAML and one that would clash with a bare "label" column.
CLASSES = ["daisy", "label", "l'œillet"]
IMAGE_SIZE, EVAL_RESIZE, CACHE_SHORT_SIDE = 64, 73, 96


def case_sizes(case):
    """(image_size, eval_resize, cache_short_side): the defaults above, or scaled from the case's image_size."""
    size = case.get("image_size", IMAGE_SIZE)
    if size == IMAGE_SIZE:
        return IMAGE_SIZE, EVAL_RESIZE, CACHE_SHORT_SIDE
    return size, round(size * EVAL_RESIZE / IMAGE_SIZE), round(size * CACHE_SHORT_SIDE / IMAGE_SIZE)
NORMALIZATIONS = {"imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), "inception": ([0.5] * 3, [0.5] * 3)}


def head_state(prefix, architecture, head, num_classes, generator, feature_rms):
    """petal's head keys and random tensors, from head.cpp's rule (written out here on purpose).
    The first Linear is scaled by the features' size so that logits stay moderate (saturated
    softmax outputs would hide differences)."""
    import torch
    _, layout, default_dropout, width = HEADS[architecture]
    dropout = head["dropout"] if head["dropout"] >= 0 else default_dropout
    if architecture.startswith("efficientnet_lite") and not head["hidden"]:
        dropout = 0.0  # a Lite linear head is the bare _fc; its dropout is a separate module
    state = collections.OrderedDict()

    def linear(name, n_in, n_out):
        scale = 2.0 / feature_rms if not state else 1.0
        state[f"{name}.weight"] = scale * torch.randn(n_out, n_in, generator=generator) / math.sqrt(n_in)
        state[f"{name}.bias"] = 0.1 * torch.randn(n_out, generator=generator)

    if not head["hidden"]:
        if layout == "linear" and dropout <= 0:
            linear(prefix, width, num_classes)
        else:
            linear(f"{prefix}.1", width, num_classes)  # 0 is the Dropout
        return state
    index = 0
    for size in head["hidden"]:
        linear(f"{prefix}.{index}", width, size)
        index += 1
        if head["batch_norm"]:
            state[f"{prefix}.{index}.weight"] = 1 + 0.1 * torch.randn(size, generator=generator)
            state[f"{prefix}.{index}.bias"] = 0.1 * torch.randn(size, generator=generator)
            state[f"{prefix}.{index}.running_mean"] = 0.1 * torch.randn(size, generator=generator)
            state[f"{prefix}.{index}.running_var"] = 0.5 + torch.rand(size, generator=generator)
            state[f"{prefix}.{index}.num_batches_tracked"] = torch.tensor(7)
            index += 1
        index += 1  # ReLU
        if dropout > 0:
            index += 1  # Dropout
        width = size
    linear(f"{prefix}.{index}", width, num_classes)
    return state


def reference_model(architecture, num_classes, seed, size=IMAGE_SIZE):
    """make_reference.py's network (torchvision / the Lite0 package / small_cnn's twin), with
    calibrated BatchNorm statistics so that outputs depend on the input."""
    import torch
    import make_reference
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    model, features = make_reference.BUILDERS[architecture](num_classes)
    make_reference.calibrate_batchnorm(model, torch.randn(4, 3, size, size, generator=generator), generator)
    model.eval()
    with torch.no_grad():
        feature_rms = float(features(model, torch.randn(4, 3, size, size, generator=generator)).pow(2).mean().sqrt())
    return model, feature_rms


def make_trained(out_dir, cases=""):
    import torch
    selected = [c for c in cases.split(",") if c] or [c for c in CASES if c != "vgg16_bn"]
    unknown = sorted(set(selected) - set(CASES))
    if unknown:
        sys.exit(f"unknown cases {unknown}; known: {sorted(CASES)}")
    os.makedirs(out_dir, exist_ok=True)
    for seed, (name, case) in enumerate(sorted(CASES.items())):
        if name not in selected:
            continue
        architecture, head = case["architecture"], dict(case["head"], num_classes=len(CLASSES))
        prefix = HEADS[architecture][0]
        image_size, eval_resize, cache_short_side = case_sizes(case)
        reference, feature_rms = reference_model(architecture, len(CLASSES), seed, image_size)
        state = reference.state_dict()
        # Only the head's keys change; for a plain linear head they are the reference's own.
        generator = torch.Generator().manual_seed(1000 + seed)
        backbone = collections.OrderedDict((k, v) for k, v in state.items() if not k.startswith(prefix + "."))
        backbone.update(head_state(prefix, architecture, head, len(CLASSES), generator, feature_rms))
        folder = os.path.join(out_dir, name)
        os.makedirs(folder, exist_ok=True)
        torch.save(backbone, os.path.join(folder, "model.pt"))
        mean, std = NORMALIZATIONS[case.get("normalization", "imagenet")]
        write_json(os.path.join(folder, "model.json"), {
            "format": 1, "architecture": architecture, "head": head, "classes": CLASSES,
            "preprocessing": {"image_size": image_size, "eval_resize": eval_resize, "cache_short_side": cache_short_side,
                              "upscale": False, "mean": mean, "std": std, "colour_order": "RGB"},
            "weights": "model.pt", "origin": {"weights": "none"}, "stage": "train"})
        with open(os.path.join(folder, "classes.txt"), "w", encoding="utf-8") as f:
            f.write("".join(c + "\n" for c in CLASSES))
    write_json(os.path.join(out_dir, "cases.json"), sorted(selected))


def has_reference_keys(case):
    """True when petal's head has the reference network's own keys: a plain linear head that is
    either bare (no dropout asked of a "linear" layout) or torchvision's Sequential(Dropout, Linear)."""
    architecture, head = case["architecture"], case["head"]
    _, layout, default_dropout, _ = HEADS[architecture]
    dropout = head["dropout"] if head["dropout"] >= 0 else default_dropout
    return not head["hidden"] and (layout == "dropout_linear" or dropout <= 0 or architecture.startswith("efficientnet_lite"))


# ---------------------------------------------------------------------------------------------
# predictions through MLflow

def check_case(name, trained_dir, model_dir, images_dir):
    import mlflow.pyfunc
    import pandas as pd
    import torch
    import petal_pyfunc

    errors = []
    model = mlflow.pyfunc.load_model(model_dir)  # strict state-dict loading happens here
    names = sorted(n for n in os.listdir(images_dir) if n != "images.json")
    blobs = [open(os.path.join(images_dir, n), "rb").read() for n in names]
    frame = pd.DataFrame({"image": blobs})
    predicted = model.predict(frame)

    expected_columns = ["label", "probability"] + ["p_" + c for c in CLASSES]
    if list(predicted.columns) != expected_columns:
        errors.append(f"columns {list(predicted.columns)} != {expected_columns}")
        return {"errors": errors}
    if len(predicted) != len(names):
        errors.append(f"{len(predicted)} rows for {len(names)} images")
    probabilities = predicted[expected_columns[2:]].to_numpy()
    if probabilities.dtype != np.float32:
        errors.append(f"probabilities are {probabilities.dtype}, not float32")
    sums = probabilities.astype(np.float64).sum(axis=1)
    if np.abs(sums - 1).max() > 1e-5:
        errors.append(f"probabilities do not sum to 1: {sums.tolist()}")
    for row, label in enumerate(predicted["label"]):
        best = int(np.argmax(probabilities[row]))
        if label != CLASSES[best] or predicted["probability"][row] != probabilities[row, best]:
            errors.append(f"row {row}: label {label!r} / probability {predicted['probability'][row]} do not match "
                          f"the class columns {probabilities[row].tolist()}")

    # The same images as a path, as a base64 str and as base64 bytes (MLflow's "inputs" requests
    # pass the text undecoded) give the same answer.
    others = pd.DataFrame({"image": [os.path.join(images_dir, names[0]), base64.b64encode(blobs[1]).decode("ascii"),
                                     base64.encodebytes(blobs[2])]})
    again = model.predict(others)[expected_columns[2:]].to_numpy()
    if not np.array_equal(again, probabilities[:3]):
        errors.append("a path or base64 text predicted differently from the same bytes")

    # Different images give different outputs (the weights are not degenerate).
    if len({tuple(p) for p in probabilities.tolist()}) < 2:
        errors.append("every image got the same probabilities: the fixture is degenerate")

    # An undecodable row: a clear error naming the row.
    try:
        model.predict(pd.DataFrame({"image": [blobs[0], b"not an image"]}))
        errors.append("undecodable bytes were accepted")
    except Exception as error:  # noqa: BLE001 - MlflowException
        if "row 1" not in str(error) or "decode" not in str(error):
            errors.append(f"undecodable bytes: unclear error: {error}")

    result = {"errors": errors, "labels": predicted["label"].tolist()}
    case = CASES[name]
    if has_reference_keys(case):
        # Same keys as the reference network: same weights and inputs must give the same outputs.
        import make_reference
        reference, _ = make_reference.BUILDERS[case["architecture"]](len(CLASSES))
        reference.load_state_dict(torch.load(os.path.join(trained_dir, name, "model.pt")), strict=True)
        reference.eval()
        spec = json.load(open(os.path.join(trained_dir, name, "model.json"), encoding="utf-8"))
        preprocessing = petal_pyfunc.Preprocessing(spec["preprocessing"])
        worst = 0.0
        for row, blob in enumerate(blobs):
            with torch.no_grad():
                logits = reference(torch.from_numpy(preprocessing(blob)).unsqueeze(0))
            expected = torch.softmax(logits, dim=1)[0].numpy()
            worst = max(worst, float(np.abs(expected - probabilities[row]).max()))
        result["max_reference_diff"] = worst
        if worst != 0:
            errors.append(f"probabilities differ from the reference network's by up to {worst}")
    return result


def predict(trained_dir, models_dir, images_dir, out_json):
    import time
    results = {}
    for name in json.load(open(os.path.join(trained_dir, "cases.json"))):
        started = time.monotonic()
        try:
            results[name] = check_case(name, trained_dir, os.path.join(models_dir, name), images_dir)
        except Exception as error:  # noqa: BLE001 - reported per case
            results[name] = {"errors": [f"{type(error).__name__}: {error}"]}
        results[name]["seconds"] = round(time.monotonic() - started, 2)
    results["_loader_errors"] = {"errors": loader_error_checks(trained_dir, models_dir)}
    write_json(out_json, results)


def loader_error_checks(trained_dir, models_dir):
    """Errors _load_pyfunc raises for a broken data folder name the problem and the way out."""
    import petal_pyfunc
    errors = []
    cases = sorted(os.listdir(models_dir))
    case = "small_cnn" if "small_cnn" in cases else cases[0]
    broken = os.path.join(models_dir, "_broken_data")
    shutil.copytree(os.path.join(models_dir, case, "data"), broken)
    spec_path = os.path.join(broken, "model.json")
    spec = json.load(open(spec_path, encoding="utf-8"))
    write_json(spec_path, dict(spec, architecture="resnet999"))
    try:
        petal_pyfunc._load_pyfunc(broken)
        errors.append("an unknown architecture was accepted")
    except ValueError as error:
        if "resnet999" not in str(error) or "efficientnet_lite0" not in str(error):
            errors.append(f"unknown architecture: the error does not list the known ones: {error}")
    wrong_head = dict(spec, head=dict(spec["head"], hidden=[7]))
    write_json(spec_path, wrong_head)
    try:
        petal_pyfunc._load_pyfunc(broken)
        errors.append("weights that do not fit the head were accepted")
    except ValueError as error:
        if "model.pt does not fit" not in str(error):
            errors.append(f"mismatched weights: unclear error: {error}")
    shutil.rmtree(broken)
    return errors


# ---------------------------------------------------------------------------------------------
# MLmodel

def read_mlmodel(model_dir, out_json):
    import yaml
    from mlflow.models import Model
    from mlflow.utils.requirements_utils import _check_requirement_satisfied

    with open(os.path.join(model_dir, "MLmodel"), encoding="utf-8") as f:
        document = yaml.safe_load(f)
    model = Model.load(model_dir)
    signature = model.signature
    unsatisfied = []
    for line in open(os.path.join(model_dir, "requirements.txt"), encoding="utf-8").read().split():
        mismatch = _check_requirement_satisfied(line)
        # OpenCV comes from Debian's python3-opencv here, not from pip.
        if mismatch is not None and not line.startswith("opencv-python-headless"):
            unsatisfied.append(str(mismatch))
    with open(os.path.join(model_dir, "python_env.yaml"), encoding="utf-8") as f:
        python_env = yaml.safe_load(f)
    with open(os.path.join(model_dir, "conda.yaml"), encoding="utf-8") as f:
        conda = yaml.safe_load(f)
    write_json(out_json, {
        "yaml": document,
        "model": {"flavors": model.flavors, "model_uuid": model.model_uuid, "mlflow_version": model.mlflow_version,
                  "utc_time_created": model.utc_time_created, "metadata": model.metadata},
        "signature": {"inputs": signature.inputs.to_dict(), "outputs": signature.outputs.to_dict()},
        "unsatisfied_requirements": unsatisfied,
        "python_env": python_env,
        "conda": conda,
    })


# ---------------------------------------------------------------------------------------------
# preprocessing parity with petal's C++

def decode_flag_name(data, short_side):
    import cv2
    import petal_pyfunc
    size = petal_pyfunc.jpeg_size(data)
    if size is None:
        return "IMREAD_COLOR (not a JPEG)"
    shorter = min(size)
    for factor, name in ((8, "IMREAD_REDUCED_COLOR_8"), (4, "IMREAD_REDUCED_COLOR_4"), (2, "IMREAD_REDUCED_COLOR_2")):
        if shorter // factor >= short_side:
            return name
    return "IMREAD_COLOR"


def preprocess(spec_json, images_dir, cpp_dir, out_json):
    import cv2
    import petal_pyfunc
    spec = json.load(open(spec_json, encoding="utf-8"))
    preprocessing = petal_pyfunc.Preprocessing(spec)
    results = {}
    for name in sorted(json.load(open(os.path.join(images_dir, "images.json")))):
        data = open(os.path.join(images_dir, name), "rb").read()
        ours = preprocessing(data)
        theirs = np.fromfile(os.path.join(cpp_dir, name + ".f32"), dtype=np.float32)
        entry = {"shape": list(ours.shape), "decode": decode_flag_name(data, preprocessing.cache_short_side)}
        if theirs.size != ours.size:
            entry["max_abs_diff"] = None
            entry["error"] = f"petal wrote {theirs.size} floats, Python made {ours.size}"
        else:
            entry["max_abs_diff"] = float(np.abs(theirs.reshape(ours.shape) - ours).max())
        # Does the EXIF orientation matter for this file? (It must for exif_rotated.jpg, or that
        # case tests nothing.)
        ignoring = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        applied = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        entry["orientation_matters"] = ignoring.shape != applied.shape or not np.array_equal(ignoring, applied)
        results[name] = entry
    write_json(out_json, results)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "images":
        make_images(*args)
    elif command == "trained":
        make_trained(*args)
    elif command == "predict":
        predict(*args)
    elif command == "mlmodel":
        read_mlmodel(*args)
    elif command == "preprocess":
        preprocess(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
