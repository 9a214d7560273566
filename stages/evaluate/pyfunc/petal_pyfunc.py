"""petal's trained classifier as an MLflow python_function model (loader_module protocol).

petal embeds this file in its binary and writes it to <model>/code/petal_pyfunc.py
(stages/evaluate/mlflow_model.cpp); MLflow puts code/ on sys.path and calls
_load_pyfunc(<model>/data). data/ holds the train or finetune stage's output:
  model.pt     petal's state dict (torch.save format), loaded with strict key matching
  model.json   architecture, head, classes and preprocessing
  classes.txt  the class names, one per line (informational; model.json's list is authoritative)

Invariant: predict() gives what petal gives for the same file. The network is rebuilt in PyTorch
under petal's parameter names, and the image goes through exactly petal's evaluation view with
the same OpenCV:
  decode_image   stages/augment/image_decode.cpp   (DCT-scaled JPEG decode, EXIF orientation,
                                                   short side to cache_short_side, BGR -> RGB)
  eval_transform stages/augment/geometry_ops.cpp   (the centre square of "short side to
                                                   eval_resize, crop image_size", one resampling)
  normalize      stages/augment/normalize.cpp      (float32((v / 255.0 - mean) / std) in double)
Bit-exact pixels need the OpenCV petal links (Debian 12's 4.6, python3-opencv); another build of
OpenCV may decode or resample JPEGs differently in the last bit.

Input: a pandas DataFrame with a column "image"; each value is
  - bytes (bytearray, memoryview): an encoded image (JPEG, PNG, BMP, ... anything OpenCV reads).
    MLflow's scoring server gives this for the "binary" column of a "dataframe_split" or
    "dataframe_records" request: it base64-decodes the JSON string. Bytes that are entirely
    base64 text are decoded first ("inputs" and "instances" requests pass the text as it is; an
    encoded image always has bytes outside the base64 alphabet, so this is unambiguous);
  - str: the path of an existing file, read as the encoded image; any other str is decoded as
    base64 (standard alphabet, whitespace ignored) of an encoded image.
Output: a DataFrame with the input's index and the columns
  label        the predicted class (argmax of the logits, as petal's metrics take it)
  probability  float32 softmax probability of that class
  p_<class>    float32 softmax probability of each class, in model.json's class order
               (prefixed so that no class name can clash with "label" or "probability").
Each image is run through the network on its own (batch of one), so its probabilities do not
depend on which other images share the request. torch's intra-op threads: $PETAL_THREADS, else
min(2, cores), set when the model is loaded (a process-wide setting).
"""
import base64
import binascii
import json
import math
import os

import cv2
import numpy as np
import pandas as pd
import torch

MODEL_FORMAT = 1            # model.json "format" this loader reads
CLASS_COLUMN_PREFIX = "p_"  # the C++ writer declares the same columns in the MLmodel signature
IMAGE_COLUMN = "image"


def class_column(name):
    return CLASS_COLUMN_PREFIX + name


class PetalInputError(ValueError):
    """An input row petal cannot use (missing, unreadable, not an image)."""


# ---------------------------------------------------------------------------------------------
# Preprocessing: a line-by-line twin of petal's C++ (files named in the module docstring).

def _lround(x):
    """C's lround for x >= 0: halves round away from zero (Python's round() rounds them to even).
    x - floor(x) is exact in binary floating point, so the comparison with 0.5 is too."""
    whole = math.floor(x)
    return int(whole) + (1 if x - whole >= 0.5 else 0)


def jpeg_size(data):
    """A JPEG's (width, height) from its frame header without decoding; None for anything else
    (image_decode.cpp jpeg_size)."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    p = 2
    while p + 4 <= n:
        if data[p] != 0xFF:
            return None
        marker = data[p + 1]
        if marker == 0xFF:  # fill byte
            p += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            p += 2
            continue
        length = (data[p + 2] << 8) | data[p + 3]
        if length < 2:
            return None
        # SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if p + 9 > n:
                return None
            height = (data[p + 5] << 8) | data[p + 6]
            width = (data[p + 7] << 8) | data[p + 8]
            if width <= 0 or height <= 0:
                return None
            return width, height
        if marker in (0xDA, 0xD9):  # scan data or end before a frame header
            return None
        p += 2 + length
    return None


def resize_to(image, width, height):
    """INTER_AREA when shrinking both sides, INTER_LINEAR otherwise; the same size is a copy."""
    rows, cols = image.shape[:2]
    if (cols, rows) == (width, height):
        return image.copy()
    shrinking = width < cols and height < rows
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_short_side(image, short_side):
    rows, cols = image.shape[:2]
    shorter = min(cols, rows)
    if shorter == short_side:
        return image.copy()
    factor = short_side / shorter
    # The short side is exact; the long side is rounded, never below short_side.
    width = short_side if cols <= rows else max(short_side, _lround(cols * factor))
    height = short_side if rows < cols else max(short_side, _lround(rows * factor))
    return resize_to(image, width, height)


def decode_image(data, short_side, upscale):
    """Encoded bytes -> uint8 RGB HWC, short side resized to short_side (a smaller image keeps its
    size unless upscale). Large JPEGs are decoded by libjpeg at 1/2, 1/4 or 1/8 scale first."""
    flags = cv2.IMREAD_COLOR
    size = jpeg_size(data)
    if size is not None:
        shorter = min(size)
        if shorter // 8 >= short_side:
            flags = cv2.IMREAD_REDUCED_COLOR_8
        elif shorter // 4 >= short_side:
            flags = cv2.IMREAD_REDUCED_COLOR_4
        elif shorter // 2 >= short_side:
            flags = cv2.IMREAD_REDUCED_COLOR_2
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error:
        bgr = None
    if bgr is None or bgr.size == 0:
        raise PetalInputError("not an image OpenCV can decode")
    shorter = min(bgr.shape[:2])
    if shorter > short_side or (upscale and shorter < short_side):
        bgr = resize_short_side(bgr, short_side)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # after the resize, as petal does


def eval_view(image, image_size, eval_resize):
    """The centre square that "short side to eval_resize, centre crop image_size" keeps, taken
    from the source and resized once to image_size x image_size."""
    rows, cols = image.shape[:2]
    shorter = min(cols, rows)
    side = max(1, _lround(float(shorter) * image_size / eval_resize))
    if side > shorter:
        raise ValueError(f"eval_resize {eval_resize} is smaller than image_size {image_size}")
    x, y = (cols - side) // 2, (rows - side) // 2  # non-negative, so // truncates like C++
    return resize_to(image[y:y + side, x:x + side], image_size, image_size)


def normalization_table(mean, std):
    """[3, 256] float32: float32((v / 255.0 - mean[c]) / std[c]) computed in float64."""
    values = np.arange(256, dtype=np.float64) / 255.0
    return np.stack([((values - mean[c]) / std[c]).astype(np.float32) for c in range(3)])


def normalize(rgb, table):
    """uint8 RGB HWC -> float32 CHW."""
    return np.stack([table[c][rgb[:, :, c]] for c in range(3)])


class Preprocessing:
    """model.json's "preprocessing": bytes -> the network's float32 [3, S, S] input."""

    def __init__(self, spec):
        self.image_size = int(spec["image_size"])
        self.eval_resize = int(spec["eval_resize"])
        self.cache_short_side = int(spec["cache_short_side"])
        self.upscale = bool(spec["upscale"])
        colour_order = spec.get("colour_order", "RGB")
        if colour_order != "RGB":
            raise ValueError(f"model.json: colour_order {colour_order!r} is not supported (petal's images are RGB)")
        if self.eval_resize < self.image_size:
            raise ValueError(f"model.json: eval_resize {self.eval_resize} is smaller than image_size {self.image_size}")
        self.table = normalization_table([float(v) for v in spec["mean"]], [float(v) for v in spec["std"]])

    def __call__(self, data):
        rgb = decode_image(data, self.cache_short_side, self.upscale)
        return normalize(eval_view(rgb, self.image_size, self.eval_resize), self.table)


# ---------------------------------------------------------------------------------------------
# Networks under petal's parameter names (stages/train/models/).

def make_head(spec, in_features, linear_layout, default_dropout):
    """The twin of models::make_head (head.cpp). The module indices decide the state-dict keys:
      no hidden layers, "linear" layout, no dropout -> Linear                  ("fc.weight")
      no hidden layers otherwise                   -> Sequential(Dropout, Linear) ("classifier.1.weight")
      hidden [h, ...] -> per size: Linear, [BatchNorm1d], ReLU, [Dropout when dropout > 0]; then Linear
    dropout < 0 means the architecture's default."""
    num_classes = int(spec["num_classes"])
    hidden = [int(size) for size in spec.get("hidden", [])]
    dropout = float(spec.get("dropout", 0.0))
    if dropout < 0:
        dropout = default_dropout
    nn = torch.nn
    if not hidden:
        if linear_layout == "linear" and dropout <= 0:
            return nn.Linear(in_features, num_classes)
        return nn.Sequential(nn.Dropout(max(dropout, 0.0)), nn.Linear(in_features, num_classes))
    layers, width = [], in_features
    for size in hidden:
        layers.append(nn.Linear(width, size))
        if spec.get("batch_norm", True):
            layers.append(nn.BatchNorm1d(size))
        layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class SmallCnn(torch.nn.Module):
    """petal's small_cnn (small_cnn.cpp): four stages of [Conv3x3-BN-ReLU] x 2 and a 2x2 max pool,
    widths 32/64/128/256; global average pool; head "classifier" (default Dropout(0.2), Linear)."""

    WIDTHS = (32, 64, 128, 256)

    def __init__(self, head):
        super().__init__()
        nn = torch.nn
        stages, width_in = [], 3
        for width in self.WIDTHS:
            layers = []
            for c_in in (width_in, width):
                layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            stages.append(nn.Sequential(*layers, nn.MaxPool2d(2, 2)))
            width_in = width
        self.features = nn.Sequential(*stages)
        self.classifier = head

    def forward(self, x):
        x = torch.nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def _torchvision(name):
    import torchvision  # only the architectures that need it import it (requirements.txt follows)
    return getattr(torchvision.models, name)(weights=None)


def _build_resnet(name, head):
    model = _torchvision(name)
    model.fc = make_head(head, model.fc.in_features, "linear", 0.0)
    return model


def _build_densenet121(head):
    model = _torchvision("densenet121")
    model.classifier = make_head(head, model.classifier.in_features, "linear", 0.0)
    return model


def _build_vgg16_bn(head):
    # classifier.0 .. classifier.5 are VGG's fixed layers; only classifier.6 is petal's head.
    model = _torchvision("vgg16_bn")
    model.classifier[6] = make_head(head, model.classifier[6].in_features, "linear", 0.0)
    return model


def _build_convnext_tiny(head):
    # classifier.0 (LayerNorm2d) and classifier.1 (Flatten) are ConvNeXt's; classifier.2 is petal's head.
    model = _torchvision("convnext_tiny")
    model.classifier[2] = make_head(head, model.classifier[2].in_features, "linear", 0.0)
    return model


def _build_vit_b_16(head, image_size):
    # torchvision's ViT is built for one input size; petal stores the 224 px position embedding
    # (14 x 14 patches) and resizes it in forward, which _adapt_vit_b_16 does once here instead.
    import torchvision
    model = torchvision.models.VisionTransformer(image_size=image_size, patch_size=16, num_layers=12, num_heads=12,
                                                 hidden_dim=768, mlp_dim=3072)
    model.heads.head = make_head(head, 768, "linear", 0.0)
    return model


def _adapt_vit_b_16(state, image_size):
    from torchvision.models.vision_transformer import interpolate_embeddings  # bicubic, aligned corners: as petal
    return interpolate_embeddings(image_size, 16, state)


def _build_maxvit_t(head, image_size):
    # classifier.0 .. classifier.4 (pool, flatten, LayerNorm, Linear, Tanh) are MaxViT's; classifier.5 is petal's head.
    import torchvision
    model = torchvision.models.maxvit_t(weights=None, input_size=(image_size, image_size))
    model.classifier[5] = make_head(head, 512, "linear", 0.0)
    return model


def _build_inception_v3(head):
    # The auxiliary classifier is kept (its trained weights are in model.pt) but unused in eval;
    # its Linear was replaced for N classes like the head. Inputs are normalised with mean = std = 0.5
    # by the preprocessing, so torchvision's transform_input stays off.
    import torchvision
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
    model.AuxLogits.fc = torch.nn.Linear(768, int(head["num_classes"]))
    model.fc = make_head(head, 2048, "linear", 0.5)
    return model


def _build_dropout_linear(name, head):
    # mobilenet_v2 and efficientnet_b0: torchvision's Sequential(Dropout(0.2), Linear(1280, N)).
    model = _torchvision(name)
    model.classifier = make_head(head, model.classifier[-1].in_features, "dropout_linear", 0.2)
    return model


# The package's dropout before _fc per Lite variant (its efficientnet_lite_params), which is also
# petal's default dropout for an MLP head on that variant (efficientnet.cpp's LiteVariant).
LITE_DROPOUT = {0: 0.2, 1: 0.2, 2: 0.3}


def _build_efficientnet_lite(variant, head):
    # petal's efficientnet_lite0/1/2 (efficientnet.cpp) are this package's networks layer for
    # layer: the same names, ReLU6, TensorFlow "SAME" padding fixed for the variant's own input
    # size whatever the input size, BatchNorm eps 1e-3. A linear head is the package's bare _fc
    # (its Dropout is a separate module); an MLP head replaces _fc and brings its own dropout.
    from efficientnet_lite_pytorch import EfficientNet
    model = EfficientNet.from_name(f"efficientnet-lite{variant}")
    if head.get("hidden"):
        model._fc = make_head(head, model._fc.in_features, "linear", LITE_DROPOUT[variant])
    else:
        model._fc = make_head(dict(head, dropout=0.0), model._fc.in_features, "linear", LITE_DROPOUT[variant])
    return model


ARCHITECTURES = {
    "resnet18": lambda head: _build_resnet("resnet18", head),
    "resnet50": lambda head: _build_resnet("resnet50", head),
    "mobilenet_v2": lambda head: _build_dropout_linear("mobilenet_v2", head),
    "efficientnet_b0": lambda head: _build_dropout_linear("efficientnet_b0", head),
    "efficientnet_lite0": lambda head: _build_efficientnet_lite(0, head),
    "efficientnet_lite1": lambda head: _build_efficientnet_lite(1, head),
    "efficientnet_lite2": lambda head: _build_efficientnet_lite(2, head),
    "densenet121": _build_densenet121,
    "vgg16_bn": _build_vgg16_bn,
    "convnext_tiny": _build_convnext_tiny,
    "vit_b_16": _build_vit_b_16,
    "maxvit_t": _build_maxvit_t,
    "inception_v3": _build_inception_v3,
    "small_cnn": lambda head: SmallCnn(make_head(head, SmallCnn.WIDTHS[-1], "dropout_linear", 0.2)),
}


# Architectures whose torchvision network is built for the input size (model.json's image_size).
SIZED_ARCHITECTURES = {"vit_b_16", "maxvit_t"}
# State-dict adaptations to that size, applied before the strict load.
STATE_ADAPTERS = {"vit_b_16": _adapt_vit_b_16}


def build_network(architecture, head, image_size=224):
    if architecture not in ARCHITECTURES:
        raise ValueError(f"model.json: unknown architecture {architecture!r}; this loader knows: "
                         + ", ".join(sorted(ARCHITECTURES)))
    if architecture in SIZED_ARCHITECTURES:
        return ARCHITECTURES[architecture](head, image_size)
    return ARCHITECTURES[architecture](head)


def adapt_state_dict(architecture, state, image_size):
    adapter = STATE_ADAPTERS.get(architecture)
    return adapter(state, image_size) if adapter else state


def load_state_dict_file(path):
    # petal writes model.pt with LibTorch's pickler, whose tensors carry a type-tag call
    # (torch.jit._pickle.restore_type_tag) that torch's weights_only unpickler refuses. The file is
    # part of this model folder, whose code runs anyway, so the full unpickler adds no exposure.
    # weights_only=False is explicit because torch >= 2.6 defaults to True.
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except TypeError:  # a torch without weights_only (< 1.13)
        return torch.load(path, map_location="cpu")


# ---------------------------------------------------------------------------------------------
# The model MLflow loads.

def _threads():
    configured = os.environ.get("PETAL_THREADS", "")
    if configured.strip():
        return max(1, int(configured))
    return max(1, min(2, os.cpu_count() or 1))


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class PetalClassifier:
    def __init__(self, data_path):
        spec_path = os.path.join(data_path, "model.json")
        weights_path = os.path.join(data_path, "model.pt")
        for path in (spec_path, weights_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} is missing: an exported petal model keeps model.json and model.pt "
                                        "in its data folder")
        spec = _read_json(spec_path)
        if spec.get("format") != MODEL_FORMAT:
            raise ValueError(f"{spec_path}: format {spec.get('format')!r}; this loader reads format {MODEL_FORMAT} "
                             "(export the model again with the petal that trained it)")
        self.architecture = spec["architecture"]
        self.classes = list(spec["classes"])
        head = spec["head"]
        if int(head["num_classes"]) != len(self.classes):
            raise ValueError(f"{spec_path}: head.num_classes is {head['num_classes']} but {len(self.classes)} classes "
                             "are listed")
        self.preprocessing = Preprocessing(spec["preprocessing"])

        torch.set_num_threads(_threads())
        self.network = build_network(self.architecture, head, self.preprocessing.image_size)
        try:
            state = adapt_state_dict(self.architecture, load_state_dict_file(weights_path), self.preprocessing.image_size)
            self.network.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{weights_path} does not fit the {self.architecture} network that model.json describes "
                             f"(head {head}):\n{error}") from error
        self.network.eval()
        self.columns = ["label", "probability"] + [class_column(name) for name in self.classes]

    def image_bytes(self, value):
        """One input value -> the encoded image's bytes (rules in the module docstring)."""
        if isinstance(value, (bytes, bytearray, memoryview)):  # numpy's bytes_ is a bytes
            data = bytes(value)
            decoded = _from_base64(data)
            return data if decoded is None else decoded
        if isinstance(value, str):
            if os.path.isfile(value):
                with open(value, "rb") as f:
                    return f.read()
            decoded = _from_base64(value)
            if decoded is None:
                raise PetalInputError("a string that is neither an existing file nor base64")
            return decoded
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise PetalInputError("no image (the value is missing)")
        raise PetalInputError(f"a {type(value).__name__}; expected bytes, a file path or a base64 string")

    def input_tensor(self, value):
        data = self.image_bytes(value)
        try:
            return self.preprocessing(data)
        except PetalInputError as error:
            if isinstance(value, str) and not os.path.isfile(value):
                raise PetalInputError(f"{error} (the string is not an existing file, so it was read as base64)") from None
            raise

    def predict(self, model_input, params=None):
        frame = _as_frame(model_input)
        probabilities = np.zeros((len(frame), len(self.classes)), dtype=np.float32)
        best = np.zeros(len(frame), dtype=np.int64)
        for row, value in enumerate(frame[IMAGE_COLUMN].tolist()):
            try:
                pixels = self.input_tensor(value)
            except PetalInputError as error:
                raise _input_error(f"row {row} (index {frame.index[row]!r}) of column '{IMAGE_COLUMN}': {error}") from None
            with torch.no_grad():
                logits = self.network(torch.from_numpy(pixels).unsqueeze(0)).float()
            probabilities[row] = torch.softmax(logits, dim=1)[0].numpy()
            best[row] = int(torch.argmax(logits[0]))
        result = {
            "label": pd.Series([self.classes[i] for i in best], index=frame.index, dtype=object),
            "probability": pd.Series(probabilities[np.arange(len(frame)), best], index=frame.index, dtype=np.float32),
        }
        for i, name in enumerate(self.classes):
            result[class_column(name)] = pd.Series(probabilities[:, i], index=frame.index, dtype=np.float32)
        return pd.DataFrame(result, columns=self.columns)


def _from_base64(text):
    """The bytes that base64 `text` (str or bytes, whitespace ignored) encodes; None if it is not
    base64 (or empty)."""
    compact = b"".join(text.split()) if isinstance(text, bytes) else "".join(text.split())
    if not compact:
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def _as_frame(model_input):
    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input)
    if not isinstance(model_input, pd.DataFrame):
        raise _input_error(f"expected a pandas DataFrame with a column '{IMAGE_COLUMN}', got {type(model_input).__name__}")
    if IMAGE_COLUMN not in model_input.columns:
        raise _input_error(f"the input has no column '{IMAGE_COLUMN}' (its columns: {list(model_input.columns)}); "
                           f"put the encoded images (bytes, base64 strings or file paths) in '{IMAGE_COLUMN}'")
    return model_input


def _input_error(message):
    """An MLflow INVALID_PARAMETER_VALUE error, which the scoring server answers with HTTP 400 and
    the message (a plain exception would become a generic error)."""
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:
        return PetalInputError(message)
    return MlflowException.invalid_parameter_value(message)


def _load_pyfunc(data_path):
    """MLflow's loader_module entry point: data_path is <model>/data."""
    return PetalClassifier(data_path)
