#!/usr/bin/env python3
"""Run ParOSol (parosol-py 0.1.26 bundled native solver) on a raw uint8 voxel volume.

Usage:
  "$OSTEOLAB_PAROSOL_PYTHON" tests/tools/parosol_solve.py VOLUME.raw NX NY NZ \
      VOXEL_MM E_MPA NU {axial-clamped|axial-confined|axial-free} STRAIN TOL \
      [--np N] [--mpi-args "..."] [--level L] [--workdir DIR] [--keep] [--log]

Volume layout: raw uint8, x fastest (index = x + nx*(y + ny*z)), nonzero = bone.
Prints one JSON line.

Boundary conditions (z = loading axis, nodes of bone voxels only):
  axial-clamped : bottom face z=0 ux=uy=uz=0; top face z=nz uz=strain*nz*h, ux/uy free
  axial-confined: bottom face ux=uy=uz=0;     top face uz=strain*nz*h, ux=uy=0
                  (this is ParOSol's own default "constrained_axial" load case)
  axial-free    : bottom face uz=0 only; top face uz=strain*nz*h only; plus
                  rigid-body fixes on the bottom face: node A (min x, then min y)
                  ux=uy=0, node B (max x on the bottom face, same y row as A if
                  possible, else farthest bottom node from A) uy=0 (or ux=0 if
                  B differs from A only in y).
Reaction force = sum of the z component of ParOSol's nodal force vector
(K*u, written to /Solution/force) over the nodes on the top plane z=nz.
Negative = compression (force that has to be applied to the top face).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

T_START = time.perf_counter()

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from parosol_py.hdf5_io import write_parosol_input  # noqa: E402
from parosol_py.runner import (  # noqa: E402
    build_parosol_command,
    mpi_runtime_environment,
    packaged_executable,
)


def face_nodes(mask_zyx: np.ndarray, top: bool) -> np.ndarray:
    """Unique (x, y) node indices on the bottom (z=0) or top (z=nz) face."""
    sl = mask_zyx[-1] if top else mask_zyx[0]  # (ny, nx)
    ys, xs = np.nonzero(sl)
    if xs.size == 0:
        raise SystemExit(f"no bone voxels on the {'top' if top else 'bottom'} face")
    nodes = []
    for dx in (0, 1):
        for dy in (0, 1):
            nodes.append(np.stack([xs + dx, ys + dy], axis=1))
    return np.unique(np.concatenate(nodes), axis=0)  # sorted by x then y


def build_bc(mask_zyx: np.ndarray, bc: str, disp: float):
    nz = mask_zyx.shape[0]
    bot = face_nodes(mask_zyx, top=False)
    top = face_nodes(mask_zyx, top=True)
    coords = []  # rows (x, y, z, dir) dir: 0=x 1=y 2=z
    values = []

    def add(nodes_xy, z, direction, value):
        n = nodes_xy.shape[0]
        c = np.empty((n, 4), dtype=np.int64)
        c[:, 0:2] = nodes_xy
        c[:, 2] = z
        c[:, 3] = direction
        coords.append(c)
        values.append(np.full(n, value, dtype=np.float64))

    if bc in ("axial-clamped", "axial-confined"):
        for d in (0, 1, 2):
            add(bot, 0, d, 0.0)
        add(top, nz, 2, disp)
        if bc == "axial-confined":
            add(top, nz, 0, 0.0)
            add(top, nz, 1, 0.0)
    elif bc == "axial-free":
        add(bot, 0, 2, 0.0)
        add(top, nz, 2, disp)
        a = bot[0]  # min x, then min y
        add(a[None, :], 0, 0, 0.0)
        add(a[None, :], 0, 1, 0.0)
        same_row = bot[bot[:, 1] == a[1]]
        if same_row.shape[0] > 1:
            b = same_row[-1]  # farthest along x in the same row
            add(b[None, :], 0, 1, 0.0)  # uy=0 -> no rotation about z
        else:
            d2 = ((bot - a) ** 2).sum(axis=1)
            b = bot[int(np.argmax(d2))]
            if b[0] != a[0]:
                add(b[None, :], 0, 1, 0.0)
            else:
                add(b[None, :], 0, 0, 0.0)
    else:
        raise SystemExit(f"unknown bc {bc!r}")
    return np.concatenate(coords), np.concatenate(values)


class RssSampler(threading.Thread):
    """Samples sum over the process tree (launcher + all MPI ranks) of VmHWM (peak RSS)."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._halt = threading.Event()

    def _children(self, pid: int):
        out = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out += [int(p) for p in f.read().split()]
        except OSError:
            pass
        return out

    def _rss_kb(self, pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):  # per-process peak RSS
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def run(self):
        while not self._halt.is_set():
            total, stack = 0, [self.pid]
            while stack:
                p = stack.pop()
                total += self._rss_kb(p)
                stack += self._children(p)
            self.peak_kb = max(self.peak_kb, total)
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()


def grab(pattern: str, text: str, cast=float):
    m = re.search(pattern, text)
    return cast(m.group(1)) if m else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("volume")
    ap.add_argument("nx", type=int)
    ap.add_argument("ny", type=int)
    ap.add_argument("nz", type=int)
    ap.add_argument("voxel_mm", type=float)
    ap.add_argument("E_mpa", type=float)
    ap.add_argument("nu", type=float)
    ap.add_argument("bc", choices=["axial-clamped", "axial-confined", "axial-free"])
    ap.add_argument("strain", type=float)
    ap.add_argument("tol", type=float)
    ap.add_argument("--np", type=int, default=1, help="MPI processes (1 = no mpirun)")
    ap.add_argument("--mpi-args", default="", help="extra mpirun arguments, e.g. '--bind-to none'")
    ap.add_argument("--level", type=int, default=6, help="max multigrid levels (ParOSol default 6)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the HDF5 work dir")
    ap.add_argument("--log", action="store_true", help="echo ParOSol stdout to stderr")
    args = ap.parse_args()

    nx, ny, nz, h = args.nx, args.ny, args.nz, args.voxel_mm
    raw = np.fromfile(args.volume, dtype=np.uint8)
    if raw.size != nx * ny * nz:
        raise SystemExit(f"file has {raw.size} bytes, expected {nx*ny*nz}")
    mask_zyx = raw.reshape(nz, ny, nx) != 0  # numpy axis order (z, y, x); x fastest

    disp = args.strain * nz * h  # prescribed top uz [mm]
    coords_xyzd, values = build_bc(mask_zyx, args.bc, disp)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="parosol_"))
    work.mkdir(parents=True, exist_ok=True)
    # ParOSol "Image" = per-voxel Young's modulus in GPa (native reference E=1000 MPa
    # is scaled by the voxel value); voxel size in mm -> forces in N, stress in MPa.
    stiffness_xyz = np.transpose(mask_zyx, (2, 1, 0)).astype(np.float32) * np.float32(args.E_mpa / 1000.0)
    input_file = write_parosol_input(
        work / "in.h5",
        stiffness_gpa_xyz=stiffness_xyz,
        fixed_displacement_coordinates=coords_xyzd,
        fixed_displacement_values=values,
        voxel_size_mm=h,
        poisson_ratio=args.nu,
    )
    cmd = build_parosol_command(
        executable=packaged_executable(),
        input_file=input_file.name,  # native code has fixed-size path buffers
        outputs=("sed",),  # at least one field flag, else it writes SED+EFF+VonMises
        tolerance=args.tol,
        level=args.level,
        mpi_processes=args.np,
    )
    if args.np > 1 and args.mpi_args:
        # e.g. --mpi-args="--bind-to none" or "--oversubscribe" (more ranks than cores)
        cmd = [cmd[0]] + args.mpi_args.split() + cmd[1:]
    env = mpi_runtime_environment(cmd)

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sampler = RssSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall_native = time.perf_counter() - t0
    sampler.stop()
    sampler.join()
    if args.log:
        sys.stderr.write(stdout + stderr)
    if proc.returncode != 0:
        sys.stderr.write(stdout[-4000:] + "\n" + stderr[-4000:] + "\n")
        raise SystemExit(f"ParOSol failed rc={proc.returncode} (workdir {work})")

    with h5py.File(input_file, "r") as f:
        force = f["/Solution/force"][...]
        disp_field = f["/Solution/disp"][...]
        node_mm = f["/Mesh/Coordinates"][...].astype(np.float64)
    node_idx = np.rint(node_mm / h).astype(np.int64)  # (x, y, z) node indices
    top = node_idx[:, 2] == nz
    reaction = force[top].sum(axis=0)
    n_nodes = int(node_idx.shape[0])
    n_fixed = int(np.unique(coords_xyzd, axis=0).shape[0])

    total = time.perf_counter() - T_START
    out = {
        "reaction_force_n": float(reaction[2]),
        "reaction_force_xyz_n": [float(v) for v in reaction],
        "iterations": grab(r"#\s+Nr of It:\s+(\d+)", stdout, int),
        "residual": grab(r"#\s+Relative residuum:\s+([-+0-9.eE]+)", stdout),
        "abs_residual": grab(r"#\s+Absolute residuum:\s+([-+0-9.eE]+)", stdout),
        "solve_seconds": grab(r"#\s+Solving:\s+([-+0-9.eE]+)", stdout),  # PCG iterations only
        "setup_io_seconds": grab(r"#\s+Constant:\s+([-+0-9.eE]+)", stdout),  # read+mesh+BC+MG setup+write
        "native_overall_seconds": grab(r"#\s+Overall:\s+([-+0-9.eE]+)", stdout),
        "native_wall_seconds": wall_native,  # subprocess incl. MPI start-up
        "total_seconds": total,  # whole script incl. raw read, HDF5 write/read
        "peak_rss_mb": sampler.peak_kb / 1024.0,  # sum of VmHWM over ParOSol ranks (+mpirun), sampled every 20 ms
        "dofs": 3 * n_nodes,
        "free_dofs": 3 * n_nodes - n_fixed,
        "nodes": n_nodes,
        "elements": int(mask_zyx.sum()),
        "mean_top_uz_mm": float(disp_field[top, 2].mean()),
        "applied_uz_mm": disp,
        "mpi_processes": args.np,
        "mg_levels": args.level,
        "bc": args.bc,
        "workdir": str(work) if args.keep else None,
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
