#!/usr/bin/env bash
# Prepares .gpu-kit/: what scripts/gpu-check.sh needs on a GPU machine that has CMake, ninja, a
# compiler, CUDA and PyTorch's pip wheel but no package registry (docs/gpu.md).
#
#   .gpu-kit/kit.tar.xz   petal and petal-data-worker built here (RPATH $ORIGIN/../lib) with the
#                         shared libraries they need beyond glibc and libstdc++; for building the
#                         LibTorch targets there (cmake -DPETAL_TORCH_ONLY=ON): a minimal static
#                         OpenCV 4.6 (core, imgproc, imgcodecs with libjpeg, libpng, zlib), OpenSSL's
#                         libcrypto and headers, nlohmann_json, toml++ and doctest headers
#   .gpu-kit/datasets/flowers5, .gpu-kit/weights/   the default experiment's data and weights file
#
# Runs on this project's Debian 12 machine (apt packages of scripts/setup.sh, plus patchelf). The
# OpenCV source comes from Debian (apt-get source, into build-gpu-kit/; nothing in /etc changes).
# Work folders (ignored): build-gpu-kit/, and build-gpu-kit-petal/ (beside build/, so that ccache
# reuses a normal build's objects). Usage: scripts/gpu-kit.sh [--jobs N] [--help]
# Environment: PETAL_DATASETS (default ../shared/datasets), PETAL_LITE0_WEIGHTS (default
# weights/efficientnet-lite0-57934424.pth).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
jobs=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu-kit.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$repo/build-gpu-kit"
petal_dir="$repo/build-gpu-kit-petal"
kit="$repo/.gpu-kit"
stage="$work/stage"
datasets="${PETAL_DATASETS:-$repo/../shared/datasets}"
weights="${PETAL_LITE0_WEIGHTS:-$repo/weights/efficientnet-lite0-57934424.pth}"
multiarch="$(gcc -print-multiarch)"
syslib="/usr/lib/$multiarch"
nice_build() { nice -n 19 "$@"; }
say() { echo "gpu-kit: $*"; }

for tool in cmake ninja patchelf xz strip gcc; do
  command -v "$tool" >/dev/null || { echo "gpu-kit.sh: $tool is missing (apt-get install $tool)" >&2; exit 3; }
done
for file in "$syslib/libjpeg.a" "$syslib/libpng16.a" "$syslib/libz.a" /usr/include/nlohmann/json.hpp \
  /usr/include/toml++/toml.h /usr/include/doctest/doctest.h /usr/include/openssl/evp.h; do
  [[ -e "$file" ]] || { echo "gpu-kit.sh: $file is missing (scripts/setup.sh installs it)" >&2; exit 3; }
done
[[ -d "$datasets/flowers5" ]] || { echo "gpu-kit.sh: no $datasets/flowers5 (set PETAL_DATASETS)" >&2; exit 3; }
[[ -e "$weights" ]] || { echo "gpu-kit.sh: no $weights (scripts/setup.sh links it; or set PETAL_LITE0_WEIGHTS)" >&2; exit 3; }
mkdir -p "$work"

# ---- 1. OpenCV 4.6 (Debian's source), static, three modules, no optional codecs ----
opencv_source() {
  [[ -d "$work/opencv-src/modules/core" ]] && return
  local lists="$work/apt-lists"
  mkdir -p "$lists/partial" "$work/opencv-dl"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" \
    >"$work/deb-src.list"
  local opts=(-o "Dir::Etc::SourceList=$work/deb-src.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$lists")
  apt-get "${opts[@]}" update -qq
  (cd "$work/opencv-dl" && apt-get "${opts[@]}" source --download-only -qq opencv=4.6.0+dfsg-12)
  mkdir -p "$work/opencv-src"
  tar xf "$work/opencv-dl/opencv_4.6.0+dfsg.orig.tar.xz" -C "$work/opencv-src" --strip-components=1
}

opencv_build() {
  [[ -e "$work/opencv/lib/libopencv_core.a" ]] && return
  opencv_source
  local off=(BUILD_TESTS BUILD_PERF_TESTS BUILD_EXAMPLES BUILD_DOCS BUILD_opencv_apps BUILD_JAVA BUILD_opencv_python3
    BUILD_opencv_python2 WITH_IPP WITH_ITT WITH_OPENCL WITH_LAPACK WITH_EIGEN WITH_TBB WITH_OPENMP WITH_TIFF WITH_WEBP
    WITH_OPENJPEG WITH_JASPER WITH_OPENEXR WITH_GDAL WITH_GDCM WITH_IMGCODEC_HDR WITH_IMGCODEC_SUNRASTER
    WITH_IMGCODEC_PXM WITH_IMGCODEC_PFM WITH_FFMPEG WITH_GSTREAMER WITH_V4L WITH_GTK WITH_QT WITH_VTK WITH_PROTOBUF
    WITH_QUIRC WITH_ADE WITH_VA WITH_1394 WITH_CAROTENE OPENCV_GENERATE_PKGCONFIG BUILD_ZLIB BUILD_JPEG BUILD_PNG
    BUILD_SHARED_LIBS)
  local flags=()
  for option in "${off[@]}"; do flags+=("-D$option=OFF"); done
  # AVX2 as the baseline and no runtime dispatch: fewer objects to compile; every x86-64 GPU host
  # of the last decade has AVX2.
  nice_build cmake -S "$work/opencv-src" -B "$work/opencv-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$work/opencv" -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DBUILD_LIST=core,imgproc,imgcodecs -DCPU_BASELINE=AVX2 -DCPU_DISPATCH= \
    -DWITH_JPEG=ON -DWITH_PNG=ON -DWITH_PTHREADS_PF=ON "${flags[@]}" \
    -DZLIB_LIBRARY="$syslib/libz.a" -DJPEG_LIBRARY="$syslib/libjpeg.a" -DPNG_LIBRARY="$syslib/libpng16.a" \
    -DZLIB_LIBRARY_RELEASE="$syslib/libz.a" -DJPEG_LIBRARY_RELEASE="$syslib/libjpeg.a" \
    -DPNG_LIBRARY_RELEASE="$syslib/libpng16.a" >"$work/opencv-configure.log"
  nice_build ninja -C "$work/opencv-build" -j "$jobs" install >"$work/opencv-build.log"
}

# ---- 2. petal and petal-data-worker against that OpenCV (no LibTorch) ----
petal_build() {
  nice_build cmake -S "$repo" -B "$petal_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPETAL_WITH_TORCH=OFF \
    -DPETAL_BUILD_TESTS=OFF -DOpenCV_DIR="$work/opencv/lib/cmake/opencv4" >"$work/petal-configure.log"
  nice_build ninja -C "$petal_dir" -j "$jobs" petal petal-data-worker >"$work/petal-build.log"
}

# The shared libraries a binary needs, except glibc's and the compiler runtime (libstdc++,
# libgcc_s): the GPU machine's own are newer than Debian 12's, and an older libstdc++ would break
# its LibTorch.
closure() {
  ldd "$@" | awk '/=> \//{print $3}' | sort -u |
    grep -v -E '/(libc|libm|libpthread|libdl|librt|libresolv|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' || true
}

# libxml2 (through libarchive) needs ICU, whose 30 MB data library only serves encoding conversions
# of XML text; petal never parses XML (xar archives aside), so the kit carries an empty stand-in.
icu_data_stub() {
  local name="$1"
  local symbol
  symbol="$(nm -D --defined-only "$syslib/$name" | awk '/ icudt[0-9]+_dat$/{print $3}')"
  echo "const char ${symbol}[32] __attribute__((aligned(16))) = {0};" >"$work/icudata_stub.c"
  gcc -shared -fPIC -o "$stage/lib/$name" -Wl,-soname,"$name" "$work/icudata_stub.c"
}

stage_kit() {
  rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/lib" "$stage/include"
  for exe in petal petal-data-worker; do
    cp "$petal_dir/$exe" "$stage/bin/"
    strip --strip-unneeded "$stage/bin/$exe"
    patchelf --force-rpath --set-rpath '$ORIGIN/../lib:$ORIGIN/kit-lib' "$stage/bin/$exe"
  done
  local lib name
  for lib in $(closure "$petal_dir/petal" "$petal_dir/petal-data-worker"); do
    name="$(basename "$lib")"
    if [[ "$name" == libicudata.so.* ]]; then icu_data_stub "$name"; continue; fi
    cp -L "$lib" "$stage/lib/$name"
    chmod u+w "$stage/lib/$name" && strip --strip-unneeded "$stage/lib/$name"
  done
  # For linking the LibTorch targets there (cmake/gpu_kit.cmake).
  cp "$work"/opencv/lib/libopencv_{core,imgproc,imgcodecs}.a "$syslib"/{libjpeg,libpng16,libz}.a "$stage/lib/"
  strip --strip-debug "$stage"/lib/*.a
  cp -r "$work/opencv/include/opencv4" /usr/include/{nlohmann,toml++,doctest,openssl} "$stage/include/"
  cp "/usr/include/$multiarch/openssl/"*.h "$stage/include/openssl/"
  printf '{"built_on": "%s", "opencv": "4.6.0 (core, imgproc, imgcodecs; static)", "commit": "%s"}\n' \
    "$(. /etc/os-release && echo "$PRETTY_NAME")" "$(git -C "$repo" rev-parse --short HEAD)" >"$stage/kit.json"
}

# The staged binaries must start with the kit's libraries alone (plus glibc and libstdc++).
check_stage() {
  local missing
  missing="$(ldd "$stage/bin/petal" "$stage/bin/petal-data-worker" | grep 'not found' || true)"
  [[ -z "$missing" ]] || { echo "gpu-kit.sh: unresolved libraries: $missing" >&2; exit 1; }
  if ldd "$stage/bin/petal" | awk '/=> \//{print $3}' | grep -v -E "^$stage/|/(libc|libm|libstdc\+\+|libgcc_s|libresolv)\.so" | grep .; then
    echo "gpu-kit.sh: petal loads the libraries above from outside the kit" >&2
    exit 1
  fi
  "$stage/bin/petal" --version >/dev/null
}

pack() {
  mkdir -p "$kit/datasets" "$kit/weights"
  rm -f "$kit/kit.tar.xz"
  tar -C "$stage" -cf - . | xz -T"$jobs" -9 >"$kit/kit.tar.xz"
  rm -rf "$kit/datasets/flowers5"
  cp -r "$datasets/flowers5" "$kit/datasets/"
  cp -L "$weights" "$kit/weights/"
}

report_size() {
  say "staged (unpacked) $(du -sh "$stage" | cut -f1); packed $(du -sh "$kit/kit.tar.xz" | cut -f1)"
  say "datasets $(du -sh "$kit/datasets" | cut -f1), weights $(du -sh "$kit/weights" | cut -f1)"
  local tracked
  tracked="$(cd "$repo" && git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)"
  local kit_bytes
  kit_bytes="$(du -sb "$kit" | cut -f1)"
  say ".gpu-kit $((kit_bytes / 1048576)) MiB; with the tracked files $(((kit_bytes + tracked) / 1048576)) MiB of the 64 MiB that may travel"
}

say "OpenCV (minimal, static) ..."; opencv_build
say "petal, petal-data-worker ..."; petal_build
say "staging ..."; stage_kit; check_stage
say "packing ..."; pack
report_size
