//! Connectivity density from the Euler characteristic (Odgaard & Gundersen 1993, Bone
//! 14:173), as BoneJ's `Connectivity` computes it.
//!
//! Bone voxels are closed unit cubes, so bone is 26-connected and marrow 6-connected. The
//! Euler characteristic χ of their union is `V - E + F - C` over the vertices, edges, faces
//! and cubes of the union. It is accumulated per lattice vertex from its 2x2x2 neighbourhood
//! with a lookup table built here from that definition (each incident edge counts 1/2, face
//! 1/4, cube 1/8), which equals BoneJ's Toriwaki & Yonekura (2002) table summed over octants.
//!
//! The sample is cut from a larger structure, so its own χ is not its share of that
//! structure's χ. Odgaard & Gundersen's correction (BoneJ's `correctForEdges`):
//!
//! `Δχ = χ(X) - χ(X ∩ ∂V)/2 - χ(X ∩ edges of V)/4 - χ(X ∩ corners of V)/8`,
//!
//! with `X ∩ ∂V` the bone cells lying on the six faces of the image box (a 2-D complex),
//! `X ∩ edges` those on its twelve edges (1-D) and the corners' voxels. By inclusion-exclusion
//! this equals `χ(X) - ΣF χ/2 + ΣE χ/4 - ΣP χ/8` over the individual closed faces, edges and
//! corners, which is what is computed below. Then connectivity `β1 = 1 - Δχ` and
//! `Conn.D = β1 / (total image volume)`.
//!
//! Unlike BoneJ, no "purify" step is forced first: isolated particles and enclosed cavities
//! change χ (each particle +1, each cavity +1) and hence lower Conn.D, as in BoneJ without it.

use rayon::prelude::*;

use crate::volume::BoneMask;

/// Euler characteristic and connectivity of a bone mask.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Connectivity {
    /// χ of the bone as if floating in space.
    pub euler_characteristic: i64,
    /// The sample's contribution to the χ of the structure it was cut from.
    pub delta_chi: f64,
    /// β1 = 1 - Δχ.
    pub connectivity: f64,
    /// β1 / total volume (mm⁻³).
    pub conn_d_per_mm3: f64,
}

/// 8 χ contributions per 2x2x2 configuration around a lattice vertex. Bit `i + 2j + 4k` is
/// the voxel at offset (i - 1, j - 1, k - 1) from the vertex.
fn euler_lut_3d() -> [i32; 256] {
    let mut lut = [0i32; 256];
    for (code, out) in lut.iter_mut().enumerate() {
        let v = |i: usize, j: usize, k: usize| code & (1 << (i + 2 * j + 4 * k)) != 0;
        if code == 0 {
            continue;
        }
        let mut edges = 0;
        for s in 0..2 {
            // Edge along ±x: the 4 voxels with i = s; similarly for y and z.
            edges += (0..4).any(|t| v(s, t & 1, t >> 1)) as i32;
            edges += (0..4).any(|t| v(t & 1, s, t >> 1)) as i32;
            edges += (0..4).any(|t| v(t & 1, t >> 1, s)) as i32;
        }
        let mut faces = 0;
        for a in 0..2 {
            for b in 0..2 {
                // Faces in the plane x = vertex: voxels (0, a, b) and (1, a, b).
                faces += (v(0, a, b) || v(1, a, b)) as i32;
                faces += (v(a, 0, b) || v(a, 1, b)) as i32;
                faces += (v(a, b, 0) || v(a, b, 1)) as i32;
            }
        }
        let cubes = code.count_ones() as i32;
        *out = 8 - 4 * edges + 2 * faces - cubes;
    }
    lut
}

/// 4 χ contributions per 2x2 configuration around a lattice vertex of a 2-D pixel layer.
fn euler_lut_2d() -> [i32; 16] {
    let mut lut = [0i32; 16];
    for (code, out) in lut.iter_mut().enumerate() {
        if code == 0 {
            continue;
        }
        let p = |i: usize, j: usize| code & (1 << (i + 2 * j)) != 0;
        let mut edges = 0;
        for s in 0..2 {
            edges += (p(s, 0) || p(s, 1)) as i32;
            edges += (p(0, s) || p(1, s)) as i32;
        }
        let squares = code.count_ones() as i32;
        *out = 4 - 2 * edges + squares;
    }
    lut
}

/// χ of the union of closed bone cubes (26-connected bone).
pub fn euler_characteristic(mask: &BoneMask) -> i64 {
    let dims = mask.dims();
    let (nx, ny, nz) = (dims.nx, dims.ny, dims.nz);
    let lut = euler_lut_3d();
    let vox = &mask.voxels;
    let at = |x: usize, y: usize, z: usize| -> u32 {
        // Lattice-shifted lookup: voxel (x - 1, y - 1, z - 1), background outside.
        (x >= 1
            && y >= 1
            && z >= 1
            && x <= nx
            && y <= ny
            && z <= nz
            && vox[dims.index(x - 1, y - 1, z - 1)]) as u32
    };
    let eighths: i64 = (0..=nz)
        .into_par_iter()
        .map(|z| {
            let mut sum = 0i64;
            for y in 0..=ny {
                for x in 0..=nx {
                    let mut code = 0u32;
                    for k in 0..2 {
                        for j in 0..2 {
                            for i in 0..2 {
                                code |= at(x + i, y + j, z + k) << (i + 2 * j + 4 * k);
                            }
                        }
                    }
                    sum += lut[code as usize] as i64;
                }
            }
            sum
        })
        .sum();
    debug_assert_eq!(eighths % 8, 0);
    eighths / 8
}

/// χ of a 2-D layer of closed pixels, `get(u, v)` for u < nu, v < nv.
fn euler_2d(nu: usize, nv: usize, get: impl Fn(usize, usize) -> bool) -> i64 {
    let lut = euler_lut_2d();
    let at = |u: usize, v: usize| -> u32 {
        (u >= 1 && v >= 1 && u <= nu && v <= nv && get(u - 1, v - 1)) as u32
    };
    let mut quarters = 0i64;
    for v in 0..=nv {
        for u in 0..=nu {
            let code = at(u, v) | at(u + 1, v) << 1 | at(u, v + 1) << 2 | at(u + 1, v + 1) << 3;
            quarters += lut[code as usize] as i64;
        }
    }
    quarters / 4
}

/// χ of a line of closed unit segments: the number of runs.
fn euler_1d(n: usize, get: impl Fn(usize) -> bool) -> i64 {
    (0..n)
        .filter(|&t| get(t) && (t == 0 || !get(t - 1)))
        .count() as i64
}

/// Odgaard-Gundersen Δχ: χ minus the share of the cells on the image border.
pub fn delta_chi(mask: &BoneMask) -> f64 {
    let chi = euler_characteristic(mask);
    let d = mask.dims();
    let (nx, ny, nz) = (d.nx, d.ny, d.nz);
    let g = |x: usize, y: usize, z: usize| mask.voxels[d.index(x, y, z)];
    // Sum of χ over the six closed faces.
    let mut faces = 0i64;
    for z in [0, nz - 1] {
        faces += euler_2d(nx, ny, |x, y| g(x, y, z));
    }
    for y in [0, ny - 1] {
        faces += euler_2d(nx, nz, |x, z| g(x, y, z));
    }
    for x in [0, nx - 1] {
        faces += euler_2d(ny, nz, |y, z| g(x, y, z));
    }
    // Sum of χ over the twelve closed edges.
    let mut edges = 0i64;
    for (y, z) in corners2(ny, nz) {
        edges += euler_1d(nx, |x| g(x, y, z));
    }
    for (x, z) in corners2(nx, nz) {
        edges += euler_1d(ny, |y| g(x, y, z));
    }
    for (x, y) in corners2(nx, ny) {
        edges += euler_1d(nz, |z| g(x, y, z));
    }
    // The eight corners.
    let mut corners = 0i64;
    for (x, y) in corners2(nx, ny) {
        for z in [0, nz - 1] {
            corners += g(x, y, z) as i64;
        }
    }
    chi as f64 - faces as f64 / 2.0 + edges as f64 / 4.0 - corners as f64 / 8.0
}

fn corners2(a: usize, b: usize) -> [(usize, usize); 4] {
    [(0, 0), (a - 1, 0), (0, b - 1), (a - 1, b - 1)]
}

/// Connectivity and connectivity density (Odgaard & Gundersen 1993; BoneJ `Connectivity`).
/// The mask must be non-empty (checked by the caller, see [`super::morphometry`]).
pub fn connectivity_of(mask: &BoneMask) -> Connectivity {
    let chi = euler_characteristic(mask);
    let dchi = delta_chi(mask);
    let beta1 = 1.0 - dchi;
    let volume_mm3 = mask.dims().len() as f64 * mask.grid.voxel_volume_mm3();
    Connectivity {
        euler_characteristic: chi,
        delta_chi: dchi,
        connectivity: beta1,
        conn_d_per_mm3: beta1 / volume_mm3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Dims, Grid};

    fn mask(d: [usize; 3], f: impl FnMut(usize, usize, usize) -> bool) -> BoneMask {
        BoneMask::from_fn(Grid::isotropic(Dims::from(d), 1.0), f)
    }

    #[test]
    fn euler_characteristic_of_elementary_shapes() {
        // Exact integers: a cube (χ = 1), a hollow box (sphere-like shell with a cavity,
        // χ = 2), a ring (torus, χ = 0), two diagonal voxels touching at a corner (one
        // 26-connected object, χ = 1), two separate cubes (χ = 2).
        let cube = mask([6, 6, 6], |x, y, z| {
            (1..5).contains(&x) && (1..5).contains(&y) && (1..5).contains(&z)
        });
        assert_eq!(euler_characteristic(&cube), 1);
        let shell = mask([7, 7, 7], |x, y, z| {
            let inside = |a: usize| (1..6).contains(&a);
            let core = |a: usize| (2..5).contains(&a);
            inside(x) && inside(y) && inside(z) && !(core(x) && core(y) && core(z))
        });
        assert_eq!(euler_characteristic(&shell), 2);
        let ring = mask([7, 7, 3], |x, y, z| {
            z == 1
                && (1..6).contains(&x)
                && (1..6).contains(&y)
                && !((2..5).contains(&x) && (2..5).contains(&y))
        });
        assert_eq!(euler_characteristic(&ring), 0);
        let diag = mask([4, 4, 4], |x, y, z| {
            (x, y, z) == (1, 1, 1) || (x, y, z) == (2, 2, 2)
        });
        assert_eq!(euler_characteristic(&diag), 1);
        let two = mask([8, 4, 4], |x, y, z| (x == 1 || x == 5) && y == 1 && z == 1);
        assert_eq!(euler_characteristic(&two), 2);
    }

    #[test]
    fn edge_correction_of_a_cut_rod_and_a_filled_box() {
        // A rod crossing the whole box along x has χ = 1 but is a piece of an infinite rod:
        // its faces term is 2 (two end discs), edges and corners 0, so Δχ = 1 - 1 = 0.
        let rod = mask([10, 6, 6], |_, y, z| {
            (2..4).contains(&y) && (2..4).contains(&z)
        });
        assert_eq!(delta_chi(&rod), 0.0);
        // A fully solid box is a piece of a solid half-space-free universe: Δχ = 1 - 6/2 +
        // 12/4 - 8/8 = 0.
        let solid = mask([5, 4, 3], |_, _, _| true);
        assert_eq!(delta_chi(&solid), 0.0);
        // A floating particle in the interior keeps its χ.
        let blob = mask([6, 6, 6], |x, y, z| {
            (2..4).contains(&x) && (2..4).contains(&y) && (2..4).contains(&z)
        });
        assert_eq!(delta_chi(&blob), 1.0);
    }
}
