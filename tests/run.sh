#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (apt packages for
# the windowed test, a Python venv with ParOSol for the solver comparison, libtorch 2.13.0
# from PyPI for the tch trainer), then runs formatting, lints, the core tests without Bevy,
# every test with the app, the windowed app test under Xvfb with Mesa's software Vulkan
# driver, and the ReconGAN trainer's tests (feature `torch`).
#
# Everything is compiled in one profile (release) so the dependency tree is built once.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/osteolab-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
step() { printf '\n==> %s  (%s)\n' "$*" "$(date +%H:%M:%S)"; }

# --- system packages -------------------------------------------------------------------------
need=()
command -v xvfb-run >/dev/null 2>&1 || need+=(xvfb xauth)
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || [ -e /usr/share/vulkan/icd.d/lvp_icd.json ] \
  || need+=(mesa-vulkan-drivers)
ldconfig -p | grep -q 'libvulkan.so.1' || need+=(libvulkan1)
if [ ${#need[@]} -gt 0 ]; then
  step "apt-get install ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- ParOSol, the independent micro-FE solver the FE test compares against --------------------
PAROSOL_VENV=${PAROSOL_VENV:-$HOME/.cache/osteolab-parosol-venv}
if [ ! -f "$PAROSOL_VENV/.ok-0.1.26" ]; then
  step "python venv with parosol-py 0.1.26"
  rm -rf "$PAROSOL_VENV"
  python3 -m venv "$PAROSOL_VENV"
  "$PAROSOL_VENV/bin/pip" install -q parosol-py==0.1.26 h5py
  touch "$PAROSOL_VENV/.ok-0.1.26"
fi
export OSTEOLAB_PAROSOL_PYTHON="$PAROSOL_VENV/bin/python"

# --- micro-CT data (never copied into the repository) -----------------------------------------
if [ -z "${OSTEOLAB_DATA:-}" ] && [ -d "$ROOT/../shared/data" ]; then
  export OSTEOLAB_DATA="$ROOT/../shared/data"
fi
echo "micro-CT data: ${OSTEOLAB_DATA:-not found (tests that need it say so and skip)}"

# --- libtorch for the tch trainer (feature torch only; the default build never needs it) -------
step "libtorch 2.13.0 (PyPI)"
# shellcheck source=tests/torch-env.sh
. "$ROOT/tests/torch-env.sh"
echo "LIBTORCH=$LIBTORCH"

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy, core only (no Bevy)"
cargo clippy --release --no-default-features --all-targets -- -D warnings

step "clippy, with the app"
cargo clippy --release --all-targets -- -D warnings

step "tests, core only (no Bevy)"
cargo test --release --no-default-features

step "tests, with the app (includes the windowed app test under Xvfb + lavapipe)"
# The library's tests do not depend on the feature and ran in the step above; here the app's
# own tests and the integration tests (the CLI with the app's binary, the app in a window).
cargo test --release --bin osteolab --test integration

step "clippy and tests, ReconGAN trainer (feature torch, no Bevy)"
cargo clippy --release --no-default-features --features torch --all-targets -- -D warnings
cargo test --release --no-default-features --features torch --lib gan::

step "all tests passed"
