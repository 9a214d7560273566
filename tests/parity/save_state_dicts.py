"""Python side of the state-dict file tests (tests/weights_test.cpp).

petal reads torch.save files with its own reader (stages/train/weights/); these files are written
by real torch 1.13, and digests of what Python itself sees let the C++ side check exact equality.

usage:
  save_state_dicts.py fixtures OUT_DIR
      writes, each with a digest OUT_DIR/<name>.json:
        resnet18.pth      torchvision resnet18(seed 0).state_dict(), zip format (an OrderedDict
                          with _metadata)
        mixed_zip.pth     the mixed dict below, zip format
        mixed_legacy.pth  {"epoch": 7, "state_dict": mixed dict}, legacy format
                          (_use_new_zipfile_serialization=False)
      and, without a digest:
        unsupported_global.pth  a dict holding a datetime.date (global "datetime.date")
  save_state_dicts.py digest FILE OUT_JSON
      torch.load(FILE) (unwrapped as petal does) and its digest
  save_state_dicts.py compare WRITTEN REFERENCE
      exits 1 unless torch.load(WRITTEN) is a dict with the same keys in the same order as the
      (unwrapped) REFERENCE, and every tensor has the same dtype, shape, strides and exact values

A digest is {"keys": [{"name", "dtype" (e.g. "float32"), "shape", "stride", "offset",
"sha256" (of the tensor's values, contiguous, row-major), "sum" (float64), "storage_group"
(the name of the first key whose tensor uses the same storage)}, ...]} in the file's order.
"""
import collections
import datetime
import hashlib
import json
import os
import sys

import torch

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # the same as petal's reader


def unwrap(obj):
    """{"state_dict": {...}} and the like -> the inner dict, as petal's reader does."""
    unwrapped = True
    while unwrapped:
        unwrapped = False
        for key in WRAPPER_KEYS:
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj, unwrapped = obj[key], True
                break
    return obj


def tensor_bytes(tensor):
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def digest(state):
    entries, first_by_storage = [], {}
    for name, tensor in state.items():
        pointer = tensor.storage().data_ptr()
        group = first_by_storage.setdefault(pointer, name) if pointer != 0 else name
        entries.append({
            "name": name,
            "dtype": str(tensor.dtype).replace("torch.", ""),
            "shape": list(tensor.shape),
            "stride": list(tensor.stride()),
            "offset": tensor.storage_offset(),
            "sha256": hashlib.sha256(tensor_bytes(tensor)).hexdigest(),
            "sum": float(tensor.detach().double().sum()),
            "storage_group": group,
        })
    return {"keys": entries}


def write_digest(state, path):
    with open(path, "w") as out:
        json.dump(digest(state), out, indent=1)


def mixed_state_dict():
    """Every storage dtype, views with offsets and strides, shared storages, 0-dim and empty tensors."""
    torch.manual_seed(3)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = collections.OrderedDict()
    state["matrix"] = base
    state["matrix_t"] = base.t()            # transposed view: strides (1, 6), same storage
    state["block"] = base[1:3, 2:5]         # view with storage offset 8, same storage
    state["channels_last"] = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    state["double"] = torch.randn(5, dtype=torch.float64)
    state["half"] = torch.linspace(-2, 2, 7).to(torch.float16)
    state["bfloat16"] = torch.tensor([1.5, -0.25, 3.0e38, 1e-20]).to(torch.bfloat16)
    state["long"] = torch.tensor([-(2 ** 40), 0, 2 ** 62 + 1], dtype=torch.int64)
    state["int32"] = torch.tensor([-5, 7, 2 ** 31 - 1], dtype=torch.int32)
    state["int16"] = torch.tensor([-300, 300], dtype=torch.int16)
    state["int8"] = torch.tensor([-128, 127], dtype=torch.int8)
    state["uint8"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    state["bool"] = torch.tensor([True, False, True])
    state["scalar"] = torch.tensor(3.25)
    state["num_batches_tracked"] = torch.tensor(5)
    state["empty"] = torch.zeros(0, 4)
    state["param"] = torch.nn.Parameter(torch.randn(2, 2))  # pickled via _rebuild_parameter
    return state


def fixtures(out):
    os.makedirs(out, exist_ok=True)
    import torchvision

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18().state_dict()
    torch.save(resnet, os.path.join(out, "resnet18.pth"))
    write_digest(resnet, os.path.join(out, "resnet18.json"))

    mixed = mixed_state_dict()
    torch.save(mixed, os.path.join(out, "mixed_zip.pth"))
    write_digest(mixed, os.path.join(out, "mixed_zip.json"))
    torch.save({"epoch": 7, "state_dict": mixed}, os.path.join(out, "mixed_legacy.pth"),
               _use_new_zipfile_serialization=False)
    write_digest(mixed, os.path.join(out, "mixed_legacy.json"))

    torch.save({"w": torch.ones(2), "when": datetime.date(2020, 1, 2)}, os.path.join(out, "unsupported_global.pth"))


def compare(written_path, reference_path):
    written = torch.load(written_path, map_location="cpu")
    reference = unwrap(torch.load(reference_path, map_location="cpu"))
    problems = []
    if not isinstance(written, dict):
        problems.append(f"loaded a {type(written).__name__}, not a dict")
    elif list(written.keys()) != list(reference.keys()):
        problems.append(f"keys differ:\n  written   {list(written.keys())}\n  reference {list(reference.keys())}")
    else:
        for name, expected in reference.items():
            got = written[name]
            if not isinstance(got, torch.Tensor):
                problems.append(f"{name}: a {type(got).__name__}, not a tensor")
            elif got.dtype != expected.dtype or got.shape != expected.shape or got.stride() != expected.stride():
                problems.append(f"{name}: {got.dtype} {tuple(got.shape)} stride {got.stride()} vs "
                                f"{expected.dtype} {tuple(expected.shape)} stride {expected.stride()}")
            elif tensor_bytes(got) != tensor_bytes(expected):
                problems.append(f"{name}: values differ")
            elif got.requires_grad:
                problems.append(f"{name}: requires grad")
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"{len(reference)} tensors equal")


def main(argv):
    if len(argv) == 2 and argv[0] == "fixtures":
        fixtures(argv[1])
    elif len(argv) == 3 and argv[0] == "digest":
        write_digest(unwrap(torch.load(argv[1], map_location="cpu")), argv[2])
    elif len(argv) == 3 and argv[0] == "compare":
        compare(argv[1], argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
