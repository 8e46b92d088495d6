# Sourced by tests/run.sh (and usable by hand: `. tests/torch-env.sh`): installs libtorch
# 2.13.0 from PyPI into a venv outside the checkout (once) and points tch's build at it.
# The slim install (torch without its CUDA dependencies, plus the two small CUDA runtime
# wheels libtorch_cpu needs at load time) follows shared/notes/tch-libtorch.md.
TORCH_VENV=${TORCH_VENV:-$HOME/.cache/osteolab-torch-2.13.0}
if [ ! -f "$TORCH_VENV/.ok" ]; then
    echo "installing libtorch 2.13.0 (PyPI, slim) into $TORCH_VENV"
    rm -rf "$TORCH_VENV"
    python3 -m venv "$TORCH_VENV"
    "$TORCH_VENV/bin/pip" install --quiet --no-deps torch==2.13.0 \
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
    touch "$TORCH_VENV/.ok"
fi
LIBTORCH="$("$TORCH_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch"
export LIBTORCH
# Turns on torch-sys's version guard (the wheel has no build-version file).
echo 2.13.0 > "$LIBTORCH/build-version"
unset LIBTORCH_USE_PYTORCH
