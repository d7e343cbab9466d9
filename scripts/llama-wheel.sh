#!/usr/bin/env bash
# Builds llama-cpp-python once for a portable CPU baseline and prints the wheel's path.
#
#   scripts/llama-wheel.sh VERSION PYTHON
#
# pip's own build of llama-cpp-python compiles llama.cpp with -march=native (GGML_NATIVE=ON): the wheel then
# carries the kernels of the build machine (AVX-512, AMX) and pip caches it, so a machine that built once keeps
# reusing it, also on a CPU where those kernels fault. Here the wheel is built with pip's cache off and explicit
# flags, into a directory named after the version, the architecture and the flags; a later set-up on any machine
# that shares this directory reuses it, since nothing in it depends on the CPU that built it.
#
# x86-64: AVX2, FMA, F16C and BMI2 (x86-64-v3, every x86 CPU since 2015), no AVX-512, no AMX.
# aarch64: the compiler's armv8-a baseline (NEON).
set -euo pipefail

version=${1:?usage: scripts/llama-wheel.sh VERSION PYTHON}
python=${2:?usage: scripts/llama-wheel.sh VERSION PYTHON}
arch=$(uname -m)

case "$arch" in
    x86_64 | amd64)
        flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
        flags+=" -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
        ;;
    aarch64 | arm64)
        flags="-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8-a"
        ;;
    *)
        flags="-DGGML_NATIVE=OFF"
        ;;
esac
flags+=" -DGGML_OPENMP=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF"

tag=$(printf '%s\n%s\n%s\n' "$version" "$arch" "$flags" | sha256sum | cut -c1-12)
cache=${CONTENTMILL_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/contentmill/wheels}
dir="$cache/llama-cpp-python-$version-$arch-portable-$tag"

wheel=$(ls "$dir"/llama_cpp_python-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
    echo "Building llama-cpp-python $version for a portable $arch baseline (once; about 5 minutes on two cores)" >&2
    mkdir -p "$cache"
    work=$(mktemp -d "$cache/.build-XXXXXX")
    trap 'rm -rf "$work"' EXIT
    # --no-binary: never a wheel from pip's cache or an index; --no-cache-dir: the result is not cached by pip
    # either, so no natively flagged wheel can come back in a later install.
    CMAKE_ARGS="$flags" FORCE_CMAKE=1 "$python" -m pip wheel --quiet --no-deps --no-cache-dir \
        --no-binary llama-cpp-python -w "$work" "llama-cpp-python==$version" >&2
    printf '%s\n' "$flags" >"$work/CMAKE_ARGS"
    rm -rf "$dir"
    chmod 755 "$work"
    mv "$work" "$dir"
    trap - EXIT
    wheel=$(ls "$dir"/llama_cpp_python-*.whl | head -n 1)
fi
printf '%s\n' "$wheel"
