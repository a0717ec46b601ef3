#!/usr/bin/env bash
# Installs the Debian / Ubuntu packages KVScope needs (run as root, or with sudo available).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
PKGS=(build-essential cmake ninja-build pkg-config
      qt6-base-dev libqt6opengl6-dev libgl-dev libimgui-dev
      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev  # Studio video export
      libhdf5-dev hdf5-tools libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev
      libspdlog-dev libsentencepiece-dev libpcre2-dev
      xvfb xauth imagemagick python3 python3-h5py python3-numpy
      clang-14 libclang-rt-14-dev  # clang + libFuzzer for tools/fuzz.sh
      clang-format-14 clang-tidy-14  # tools/lint.sh
      libopenblas0-pthread)  # CPU matmul (dlopen'ed at run time; built-in loops without it)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
