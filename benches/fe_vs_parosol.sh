#!/usr/bin/env bash
# Side-by-side micro-FE benchmark: osteolab against ParOSol (parosol-py 0.1.26) on the same
# segmented micro-CT volume, the same boundary conditions and the same tolerance, in one run.
#
# Volume: the 200³ human trabecular sample (19.5 µm) downsampled ×2 (39 µm), Gaussian σ = 1,
# thresholded at BV/TV 0.25, largest component (~1 M DOFs). axial-clamped, ε = −1 %,
# E = 10 GPa, ν = 0.3, relative residual 1e-8. Wall time and peak memory by /usr/bin/time -v.
#
# Usage: benches/fe_vs_parosol.sh   (after tests/run.sh, which installs ParOSol's venv)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/osteolab-target}
DATA=${OSTEOLAB_DATA:-../shared/data}
PY=${OSTEOLAB_PAROSOL_PYTHON:-$HOME/.cache/osteolab-parosol-venv/bin/python}
[ -x "$PY" ] || { echo "ParOSol python not found at $PY: run tests/run.sh first (it creates the venv)" >&2; exit 1; }
BC=${BC:-axial-clamped}
TOL=${TOL:-1e-8}
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/osteolab
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN" segment "$DATA/microct/lhdl-3155-D4-gray200.json" --downsample 2 --sigma 1 \
  --target-bv-tv 0.25 --out "$WORK/mask.json"
read -r NX NY NZ VX < <(python3 -c "import json;d=json.load(open('$WORK/mask.json'));v=d['voxel_size_mm'];v=v[0] if isinstance(v,list) else v;print(*d['dims'],v)")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
peak() { grep 'Maximum resident' "$1" | awk '{printf "%.0f", $6/1024}'; }
wall() { grep 'Elapsed (wall' "$1" | awk '{print $8}'; }

/usr/bin/time -v "$BIN" fe "$WORK/mask.json" --bc "$BC" --strain -0.01 --e-mpa 10000 --nu 0.3 \
  --tol "$TOL" --json > "$WORK/ours.json" 2> "$WORK/ours.time"
python3 - "$WORK/ours.json" "$(wall "$WORK/ours.time")" "$(peak "$WORK/ours.time")" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"osteolab      : {d['dofs']} DOFs, {d['iterations']} its, residual {d['residual']:.2e}, "
      f"solve {d['seconds']:.2f} s, wall {sys.argv[2]}, peak RSS {sys.argv[3]} MB "
      f"({int(sys.argv[3])*2**20/d['dofs']:.0f} B/DOF), F = {d['reaction_force_n']:.9f} N")
PY
for NP in 1 2; do
  /usr/bin/time -v "$PY" tests/tools/parosol_solve.py "$WORK/mask.raw" "$NX" "$NY" "$NZ" "$VX" \
    10000 0.3 "$BC" -0.01 "$TOL" --np "$NP" > "$WORK/p$NP.json" 2> "$WORK/p$NP.time"
  python3 - "$WORK/p$NP.json" "$(wall "$WORK/p$NP.time")" "$(peak "$WORK/p$NP.time")" "$NP" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"ParOSol np={sys.argv[4]}  : {d['dofs']} DOFs, {d['iterations']} its, residual {d['residual']:.2e}, "
      f"solve {d['solve_seconds']:.2f} s (native overall {d['native_overall_seconds']:.2f} s), "
      f"wall {sys.argv[2]}, peak RSS {sys.argv[3]} MB (ranks: {d['peak_rss_mb']:.0f} MB), "
      f"F = {d['reaction_force_n']:.9f} N")
PY
done
