//! Local thickness (Hildebrand & Rüegsegger 1997, J Microsc 185:67) as BoneJ computes it
//! (Dougherty & Kunzelmann 2007, Microsc Microanal 13 S02:1678): the local thickness of a
//! voxel is the diameter of the largest sphere that contains the voxel and fits inside the
//! structure.
//!
//! 1. Exact squared Euclidean distance transform of the phase ([`super::edt`]): `r(c)` is the
//!    distance from voxel centre `c` to the nearest voxel centre of the other phase.
//! 2. Distance ridge: a voxel is dropped when its lattice ball `{x : |x - c|² <= r(c)²}` lies
//!    inside the lattice ball of one of its 26 neighbours `c'` (a table of the smallest
//!    neighbour radius that contains each ball present, per offset class: the lattice form of
//!    the sphere templates of Dougherty's distance ridge). Containment is exact, so no
//!    voxel's result changes, and it holds for anisotropic spacing too.
//! 3. Every voxel takes the largest radius among the ridge balls that contain it, the balls
//!    being inclusive, `|x - c|^2 <= r(c)^2`, as in Dougherty's `Local_Thickness` plugin.
//!    Balls are painted largest first, so a voxel's first value is final; each row keeps
//!    "next unpainted voxel" skip pointers (union-find with path halving), so a painted span
//!    costs O(1) and every voxel is written once, and 4³ blocks and 16³ superblocks count
//!    their unpainted voxels, so a ball skips the finished regions it overlaps without
//!    visiting their rows.
//!    Slabs of z are painted in parallel, each slab running through all balls in the same
//!    sorted order, so the result is deterministic and identical to the sequential one.
//! 4. Thickness = 2 r. Mean and SD (sample SD, n - 1) over the phase voxels.
//!
//! Differences from BoneJ: no "clean-up" pass (BoneJ's Dougherty plugin replaces surface
//! voxel values by an average of interior neighbours to soften the odd-width bias); like BoneJ
//! without it, a structure `w` voxels wide reads `w` for even `w` and `w + 1` for odd `w`
//! (the distance is to the nearest *background centre*).

use rayon::prelude::*;

use super::edt::{Border, axis_weights, squared_edt_units};
use crate::volume::BoneMask;

/// Which phase of the mask to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The bone voxels (Tb.Th).
    Bone,
    /// The marrow (background) voxels (Tb.Sp).
    Marrow,
}

/// Summary of a local-thickness map over the voxels of one phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThicknessStats {
    /// Mean local thickness (mm).
    pub mean_mm: f64,
    /// Sample standard deviation of the local thickness (mm).
    pub sd_mm: f64,
    /// Largest local thickness (mm).
    pub max_mm: f64,
    /// Number of voxels measured.
    pub voxels: usize,
    /// Number of ridge balls painted (after pruning); a cost indicator.
    pub ridge_balls: usize,
}

/// A local-thickness map: thickness in mm per voxel, 0 outside the measured phase.
#[derive(Clone, Debug, PartialEq)]
pub struct ThicknessMap {
    pub thickness_mm: Vec<f32>,
    pub stats: ThicknessStats,
}

/// Local-thickness map of one phase of `mask`, with the given convention for the outside of
/// the image. Returns `None` when the phase has no voxel, or when no voxel of the other phase
/// exists and the outside is [`Border::Ignored`] (then no ball is bounded).
pub fn local_thickness_map(mask: &BoneMask, phase: Phase, border: Border) -> Option<ThicknessMap> {
    let dims = mask.dims();
    let (nx, ny, nz) = (dims.nx, dims.ny, dims.nz);
    let in_phase: Vec<bool> = match phase {
        Phase::Bone => mask.voxels.clone(),
        Phase::Marrow => mask.voxels.iter().map(|&b| !b).collect(),
    };
    let sites: Vec<bool> = in_phase.iter().map(|&b| !b).collect();
    if !in_phase.iter().any(|&b| b) {
        return None;
    }
    if border == Border::Ignored && !sites.iter().any(|&b| b) {
        return None;
    }
    let w = axis_weights(mask.grid.voxel_size_mm);
    let unit_mm = mask.grid.voxel_size_mm[0];
    let d2 = squared_edt_units(dims, w, &sites, border);

    // Distance ridge, slice by slice: drop a centre when its lattice ball lies inside the
    // lattice ball of a neighbour (exact containment table, see `ContainmentTable`).
    let table = ContainmentTable::new(&in_phase, &d2, w);
    let mut ridge: Vec<Ball> = (0..nz)
        .into_par_iter()
        .flat_map_iter(|z| {
            let mut out = Vec::new();
            for y in 0..ny {
                for x in 0..nx {
                    let i = dims.index(x, y, z);
                    if !in_phase[i] {
                        continue;
                    }
                    let needs = table.needs(d2[i]);
                    let contained = NEIGHBOURS.iter().any(|&(dx, dy, dz)| {
                        let (a, b, c) = (x as i64 + dx, y as i64 + dy, z as i64 + dz);
                        if !dims.contains(a, b, c) {
                            return false;
                        }
                        let j = dims.index(a as usize, b as usize, c as usize);
                        let class = (dx != 0) as usize
                            | ((dy != 0) as usize) << 1
                            | ((dz != 0) as usize) << 2;
                        in_phase[j] && d2[j] as f64 >= needs[class - 1]
                    });
                    if !contained {
                        out.push(Ball {
                            r2: d2[i],
                            x: x as u32,
                            y: y as u32,
                            z: z as u32,
                        });
                    }
                }
            }
            out
        })
        .collect();
    drop(d2);
    // Largest first; ties broken by position so the order is fully deterministic.
    ridge.par_sort_unstable_by(|a, b| {
        b.r2.total_cmp(&a.r2)
            .then_with(|| (a.z, a.y, a.x).cmp(&(b.z, b.y, b.x)))
    });

    // Paint, slab by slab (slabs are whole blocks thick).
    let plane = nx * ny;
    let slab_z = (nz.div_ceil(4 * rayon::current_num_threads().max(1)))
        .div_ceil(BLOCK * SUPER)
        .max(1)
        * (BLOCK * SUPER);
    let mut thickness = vec![0f32; dims.len()];
    thickness
        .par_chunks_mut(plane * slab_z)
        .enumerate()
        .for_each(|(s, out)| {
            let painter = SlabPainter {
                nx,
                ny,
                z0: s * slab_z,
                nzs: out.len() / plane,
                w,
                unit_mm,
            };
            painter.paint(out, &in_phase, &ridge);
        });

    let (n, sum, sum2, max) = thickness
        .par_chunks(plane)
        .zip(in_phase.par_chunks(plane))
        .map(|(t, p)| {
            let mut acc = (0usize, 0f64, 0f64, 0f64);
            for (&v, &ph) in t.iter().zip(p) {
                if ph {
                    let v = v as f64;
                    acc.0 += 1;
                    acc.1 += v;
                    acc.2 += v * v;
                    acc.3 = acc.3.max(v);
                }
            }
            acc
        })
        .reduce(
            || (0, 0.0, 0.0, 0.0),
            |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3.max(b.3)),
        );
    let mean = sum / n as f64;
    let var = if n > 1 {
        ((sum2 - n as f64 * mean * mean) / (n as f64 - 1.0)).max(0.0)
    } else {
        0.0
    };
    Some(ThicknessMap {
        thickness_mm: thickness,
        stats: ThicknessStats {
            mean_mm: mean,
            sd_mm: var.sqrt(),
            max_mm: max,
            voxels: n,
            ridge_balls: ridge.len(),
        },
    })
}

/// The 26 neighbour offsets.
const NEIGHBOURS: [(i64, i64, i64); 26] = {
    let mut out = [(0i64, 0i64, 0i64); 26];
    let mut k = 0;
    let mut t = 0;
    while t < 27 {
        let (dx, dy, dz) = (t % 3 - 1, (t / 3) % 3 - 1, t / 9 - 1);
        if !(dx == 0 && dy == 0 && dz == 0) {
            out[k] = (dx, dy, dz);
            k += 1;
        }
        t += 1;
    }
    out
};

/// For every squared radius R present in the map and every neighbour offset class
/// `o = (|dx|, |dy|, |dz|)` (7 classes, indexed by the bit mask of the non-zero axes minus 1),
/// the smallest squared radius R' such that the lattice ball `{x : |x|_w² <= R}` lies inside
/// `{x : |x - o|_w² <= R'}`, i.e. `max |x - o|_w²` over the first ball. A voxel whose
/// neighbour at offset `o` has `d2 >= need(R, o)` paints nothing that neighbour does not, so
/// dropping it is exact. This is the lattice version of Dougherty's distance-ridge templates.
struct ContainmentTable {
    keys: Vec<u32>,
    needs: Vec<[f64; 7]>,
}

impl ContainmentTable {
    fn new(in_phase: &[bool], d2: &[f32], w: [f64; 3]) -> Self {
        let mut keys: Vec<u32> = d2
            .par_iter()
            .zip(in_phase.par_iter())
            .filter(|&(_, &p)| p)
            .map(|(&v, _)| v.to_bits())
            .collect();
        keys.par_sort_unstable();
        keys.dedup();
        let needs = keys
            .par_iter()
            .map(|&k| {
                let r2 = f32::from_bits(k) as f64;
                let mut need = [0f64; 7];
                for (c, slot) in need.iter_mut().enumerate() {
                    let class = c + 1;
                    let o = [
                        (class & 1) as i64,
                        ((class >> 1) & 1) as i64,
                        ((class >> 2) & 1) as i64,
                    ];
                    *slot = max_sq_offset(r2, o, w);
                }
                need
            })
            .collect();
        Self { keys, needs }
    }

    fn needs(&self, r2: f32) -> [f64; 7] {
        match self.keys.binary_search(&r2.to_bits()) {
            Ok(i) => self.needs[i],
            Err(_) => [f64::INFINITY; 7],
        }
    }
}

/// `max |x - o|_w²` over the lattice points x with `|x|_w² <= r2` (o >= 0 componentwise):
/// per (y, z) column of the ball the maximum is at x = -hx.
fn max_sq_offset(r2: f64, o: [i64; 3], w: [f64; 3]) -> f64 {
    let hz = half_width(r2, w[2]);
    let mut best = f64::NEG_INFINITY;
    for z in -hz..=hz {
        let rem_z = r2 - w[2] * (z * z) as f64;
        let hy = half_width(rem_z, w[1]);
        for y in -hy..=hy {
            let hx = half_width(rem_z - w[1] * (y * y) as f64, w[0]);
            if hx < 0 {
                continue;
            }
            let v = w[0] * ((hx + o[0]) * (hx + o[0])) as f64
                + w[1] * ((y - o[1]) * (y - o[1])) as f64
                + w[2] * ((z - o[2]) * (z - o[2])) as f64;
            best = best.max(v);
        }
    }
    best
}

/// A ridge ball: squared radius (grid units) and centre.
#[derive(Clone, Copy, Debug)]
struct Ball {
    r2: f32,
    x: u32,
    y: u32,
    z: u32,
}

/// Edge of the cubic blocks whose unpainted counts let a ball skip finished regions.
const BLOCK: usize = 4;
/// Blocks per edge of a superblock (second level of the same skipping).
const SUPER: usize = 4;

/// Paints the balls, largest first, into one z-slab of the thickness map.
struct SlabPainter {
    nx: usize,
    ny: usize,
    /// First z of the slab and its number of slices.
    z0: usize,
    nzs: usize,
    w: [f64; 3],
    unit_mm: f64,
}

impl SlabPainter {
    fn paint(&self, out: &mut [f32], in_phase: &[bool], ridge: &[Ball]) {
        let (nx, ny, z0, nzs, w) = (self.nx, self.ny, self.z0, self.nzs, self.w);
        let plane = nx * ny;
        // Skip pointers: next[r * (nx + 1) + x] = first unpainted x' >= x in row r, with
        // voxels of the other phase pre-skipped.
        let stride = nx + 1;
        let mut next = vec![0u32; nzs * ny * stride];
        // Unpainted phase voxels per block.
        let (nbx, nby, nbz) = (nx.div_ceil(BLOCK), ny.div_ceil(BLOCK), nzs.div_ceil(BLOCK));
        let mut remaining = vec![0u32; nbx * nby * nbz];
        for zl in 0..nzs {
            for y in 0..ny {
                let row = (zl * ny + y) * stride;
                let vox = (z0 + zl) * plane + y * nx;
                let brow = ((zl / BLOCK) * nby + y / BLOCK) * nbx;
                for x in 0..nx {
                    if in_phase[vox + x] {
                        next[row + x] = x as u32;
                        remaining[brow + x / BLOCK] += 1;
                    } else {
                        next[row + x] = (x + 1) as u32;
                    }
                }
                next[row + nx] = nx as u32;
            }
        }
        // Unpainted phase voxels per superblock of SUPER³ blocks.
        let (nsx, nsy, nsz) = (
            nbx.div_ceil(SUPER),
            nby.div_ceil(SUPER),
            nbz.div_ceil(SUPER),
        );
        let mut super_remaining = vec![0u32; nsx * nsy * nsz];
        for bz in 0..nbz {
            for by in 0..nby {
                for bx in 0..nbx {
                    let s = ((bz / SUPER) * nsy + by / SUPER) * nsx + bx / SUPER;
                    super_remaining[s] += remaining[(bz * nby + by) * nbx + bx];
                }
            }
        }
        // Squared distance from c to the interval [lo, hi] along one axis.
        let gap = |c: i64, lo: i64, hi: i64| -> f64 {
            let d = if c < lo {
                lo - c
            } else if c > hi {
                c - hi
            } else {
                0
            };
            (d * d) as f64
        };
        let b = BLOCK as i64;
        let sb = (BLOCK * SUPER) as i64;
        let (zs0, zs1) = (z0 as i64, (z0 + nzs) as i64 - 1);
        for ball in ridge {
            let r2 = ball.r2 as f64;
            let (cx, cy, cz) = (ball.x as i64, ball.y as i64, ball.z as i64);
            let hz = half_width(r2, w[2]);
            let za = (cz - hz).max(zs0);
            let zb = (cz + hz).min(zs1);
            if za > zb {
                continue;
            }
            let hy = half_width(r2, w[1]);
            let hx = half_width(r2, w[0]);
            let ya = (cy - hy).max(0);
            let yb = (cy + hy).min(ny as i64 - 1);
            let xa = (cx - hx).max(0);
            let xb = (cx + hx).min(nx as i64 - 1);
            let value = (2.0 * r2.sqrt() * self.unit_mm) as f32;
            // Slab-local z from here on.
            let (za, zb, czl) = (za - zs0, zb - zs0, cz - zs0);
            let nzl = nzs as i64;
            for sz in za / sb..=zb / sb {
                let (sz_lo, sz_hi) = (sz * sb, ((sz + 1) * sb).min(nzl) - 1);
                let rsz = w[2] * gap(czl, sz_lo, sz_hi);
                if rsz > r2 {
                    continue;
                }
                for sy in ya / sb..=yb / sb {
                    let (sy_lo, sy_hi) = (sy * sb, ((sy + 1) * sb).min(ny as i64) - 1);
                    let rsy = rsz + w[1] * gap(cy, sy_lo, sy_hi);
                    if rsy > r2 {
                        continue;
                    }
                    for sx in xa / sb..=xb / sb {
                        let sidx = ((sz as usize) * nsy + sy as usize) * nsx + sx as usize;
                        if super_remaining[sidx] == 0 {
                            continue;
                        }
                        let (sx_lo, sx_hi) = (sx * sb, ((sx + 1) * sb).min(nx as i64) - 1);
                        if rsy + w[0] * gap(cx, sx_lo, sx_hi) > r2 {
                            continue;
                        }
                        for bz in za.max(sz_lo) / b..=zb.min(sz_hi) / b {
                            let z_lo = bz * b;
                            let z_hi = (z_lo + b).min(nzl) - 1;
                            let rz = w[2] * gap(czl, z_lo, z_hi);
                            if rz > r2 {
                                continue;
                            }
                            for by in ya.max(sy_lo) / b..=yb.min(sy_hi) / b {
                                let y_lo = by * b;
                                let y_hi = (y_lo + b).min(ny as i64) - 1;
                                let ry = rz + w[1] * gap(cy, y_lo, y_hi);
                                if ry > r2 {
                                    continue;
                                }
                                for bx in xa.max(sx_lo) / b..=xb.min(sx_hi) / b {
                                    let blk =
                                        ((bz as usize) * nby + by as usize) * nbx + bx as usize;
                                    if remaining[blk] == 0 {
                                        continue;
                                    }
                                    let x_lo = bx * b;
                                    let x_hi = (x_lo + b).min(nx as i64) - 1;
                                    if ry + w[0] * gap(cx, x_lo, x_hi) > r2 {
                                        continue;
                                    }
                                    let mut painted = 0u32;
                                    for zl in z_lo.max(za)..=z_hi.min(zb) {
                                        let rem_z = r2 - w[2] * ((zl - czl) * (zl - czl)) as f64;
                                        let hyz = half_width(rem_z, w[1]);
                                        for y in y_lo.max(cy - hyz)..=y_hi.min(cy + hyz) {
                                            let rem_y = rem_z - w[1] * ((y - cy) * (y - cy)) as f64;
                                            let hxy = half_width(rem_y, w[0]);
                                            let x0 = x_lo.max(cx - hxy);
                                            let x1 = x_hi.min(cx + hxy);
                                            if hxy < 0 || x0 > x1 {
                                                continue;
                                            }
                                            let (x0, x1) = (x0 as usize, x1 as usize);
                                            let r = zl as usize * ny + y as usize;
                                            let next_row = &mut next[r * stride..(r + 1) * stride];
                                            let out_row = &mut out[r * nx..(r + 1) * nx];
                                            let mut x = find(next_row, x0);
                                            while x <= x1 {
                                                out_row[x] = value;
                                                next_row[x] = (x + 1) as u32;
                                                painted += 1;
                                                x = find(next_row, x + 1);
                                            }
                                        }
                                    }
                                    remaining[blk] -= painted;
                                    super_remaining[sidx] -= painted;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Largest integer h >= 0 with w h^2 <= rem (or -1 when rem < 0).
#[inline]
fn half_width(rem: f64, w: f64) -> i64 {
    if rem < 0.0 {
        return -1;
    }
    let mut h = (rem / w).sqrt().floor() as i64;
    while w * ((h + 1) * (h + 1)) as f64 <= rem {
        h += 1;
    }
    while h > 0 && w * (h * h) as f64 > rem {
        h -= 1;
    }
    h
}

/// First unpainted index >= x in a row of skip pointers (path halving).
#[inline]
fn find(next: &mut [u32], mut x: usize) -> usize {
    loop {
        let n = next[x] as usize;
        if n == x {
            return x;
        }
        let nn = next[n] as usize;
        next[x] = nn as u32;
        x = n;
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // index loops mirror the brute-force definitions
mod tests {
    use super::*;
    use crate::volume::{Dims, Grid};

    /// Brute-force reference: for every voxel, the largest radius among *all* phase voxels'
    /// inclusive balls that contain it (no ridge pruning, no skip pointers).
    fn brute(mask: &BoneMask, phase: Phase, border: Border) -> Vec<f32> {
        let dims = mask.dims();
        let in_phase: Vec<bool> = mask
            .voxels
            .iter()
            .map(|&b| if phase == Phase::Bone { b } else { !b })
            .collect();
        let sites: Vec<bool> = in_phase.iter().map(|&b| !b).collect();
        let w = axis_weights(mask.grid.voxel_size_mm);
        let d2 = squared_edt_units(dims, w, &sites, border);
        let mut out = vec![0f32; dims.len()];
        for i in 0..dims.len() {
            if !in_phase[i] {
                continue;
            }
            let [x, y, z] = dims.coords(i);
            let mut best = 0f64;
            for j in 0..dims.len() {
                if !in_phase[j] {
                    continue;
                }
                let [a, b, c] = dims.coords(j);
                let d = w[0] * (x as f64 - a as f64).powi(2)
                    + w[1] * (y as f64 - b as f64).powi(2)
                    + w[2] * (z as f64 - c as f64).powi(2);
                if d <= d2[j] as f64 {
                    best = best.max((d2[j] as f64).sqrt());
                }
            }
            out[i] = (2.0 * best * mask.grid.voxel_size_mm[0]) as f32;
        }
        out
    }

    #[test]
    fn pruned_sorted_painting_equals_brute_force_max_of_spheres() {
        // Exactness of the ridge pruning and skip-pointer painting: identical maps (to f32
        // rounding, 1e-5 relative) to the brute-force maximum over all inscribed balls, on
        // random blobs, both phases, both border conventions, isotropic and anisotropic.
        let dims = Dims::new(14, 12, 10);
        let mut s = 7u64;
        let mut rnd = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let centres: Vec<[f64; 4]> = (0..6)
            .map(|_| [rnd() * 14.0, rnd() * 12.0, rnd() * 10.0, 1.5 + 3.0 * rnd()])
            .collect();
        for vs in [[0.02, 0.02, 0.02], [0.02, 0.03, 0.025]] {
            let grid = Grid {
                dims,
                voxel_size_mm: vs,
                origin_mm: [0.0; 3],
            };
            let mask = BoneMask::from_fn(grid, |x, y, z| {
                centres.iter().any(|c| {
                    (x as f64 - c[0]).powi(2)
                        + (y as f64 - c[1]).powi(2)
                        + (z as f64 - c[2]).powi(2)
                        <= c[3] * c[3]
                })
            });
            for phase in [Phase::Bone, Phase::Marrow] {
                for border in [Border::Site, Border::Ignored] {
                    let fast = local_thickness_map(&mask, phase, border).unwrap();
                    let slow = brute(&mask, phase, border);
                    for i in 0..dims.len() {
                        let (a, b) = (fast.thickness_mm[i], slow[i]);
                        assert!(
                            (a - b).abs() <= 1e-5 * b.max(1e-3),
                            "{phase:?} {border:?} {vs:?} voxel {i}: {a} vs {b}"
                        );
                    }
                    assert!(fast.stats.ridge_balls > 0);
                }
            }
        }
    }
}
