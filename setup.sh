#!/usr/bin/env bash
# One-time setup on Debian 12 / Ubuntu 22.04+: system packages (when run as root), then a Python
# virtual environment in .venv with everything pinned in pyproject.toml. Safe to run again.
#
# Non-root users: first run, as root,
#   apt-get install -y python3-venv gcc make cmake espeak-ng flite gcc-arm-none-eabi libnewlib-arm-none-eabi \
#       qemu-system-arm qemu-user-static mmdebstrap openssh-server sox clang \
#       gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
#   and on Debian 12 also: apt-get install -y libclang-rt-14-dev (libFuzzer's runtime for clang 14)
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(python3-venv gcc make cmake espeak-ng flite gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
              qemu-user-static mmdebstrap openssh-server sox clang gcc-aarch64-linux-gnu libc6-dev-arm64-cross
              qemu-user)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# libFuzzer's runtime (tests/test_reliability_fuzz.py): Debian 12 packages it as libclang-rt-<N>-dev,
# a Recommends of clang that --no-install-recommends leaves out (releases without that package ship
# it inside libclang-common-<N>-dev, which clang depends on).
clang_major=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n1)
fuzzer_rt="libclang-rt-${clang_major}-dev"
if [ -n "$clang_major" ] && ! dpkg-query -W -f='${Status}' "$fuzzer_rt" 2>/dev/null | grep -q "install ok installed"; then
  if [ "$(id -u)" = 0 ]; then
    apt-cache show "$fuzzer_rt" >/dev/null 2>&1 || apt-get update -qq
    if apt-cache show "$fuzzer_rt" >/dev/null 2>&1; then
      echo "setup: installing $fuzzer_rt (libFuzzer runtime)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$fuzzer_rt" >/dev/null
    fi
  elif apt-cache show "$fuzzer_rt" >/dev/null 2>&1; then
    echo "setup: missing system package: $fuzzer_rt (libFuzzer runtime)" >&2
    echo "setup: run as root: apt-get install -y $fuzzer_rt" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch is pinned to its CPU build (2.13.0); seglearn ships the real `watch` IMU data file and is
# installed without its dependencies (we only read that file, never import seglearn).
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all]'
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps seglearn==1.2.5
echo "setup: done (.venv ready; activate with: . .venv/bin/activate)"
