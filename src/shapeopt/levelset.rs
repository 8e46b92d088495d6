//! The bone surface as the zero level set of a signed distance φ on the voxel grid (Osher &
//! Sethian 1988, J Comput Phys 79:12), and the volume-constrained move of that surface.
//!
//! Convention: φ < 0 in bone, φ > 0 in marrow, distances in units of the x voxel edge. The
//! distance is built with the exact Euclidean distance transform ([`crate::morph::edt`]) of
//! both phases, shifted by half the smallest voxel edge so that the surface lies half-way
//! between the centres of a bone voxel and its marrow neighbour: `{φ < 0}` reproduces the mask
//! exactly, and a bone voxel touching marrow has φ = −½.
//!
//! Reinitialisation: Sussman, Smereka & Osher (1994, J Comput Phys 114:146) restore |∇φ| = 1 by
//! integrating a Hamilton–Jacobi equation to steady state. On a voxel grid whose interface is,
//! after every move, the boundary of a voxel mask, the exact EDT of that mask gives the same
//! signed distance in one pass and without smearing, so [`signed_distance`] is the
//! reinitialisation; between reinitialisations φ evolves continuously, which keeps the
//! sub-voxel part of the motion.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::morph::edt::{Border, axis_weights, squared_edt_units};
use crate::volume::segment::largest_component;
use crate::volume::{BoneMask, Dims};

/// The value given to a voxel whose sign had to be set by the mask (ties, island removal,
/// regrowth): just inside its phase, so that the next move can flip it easily.
const SIGN_MARGIN_VOXELS: f32 = 1e-3;

/// Signed distance of the mask's surface (voxel units, negative in bone; see the module docs).
/// Voxels with no voxel of the other phase anywhere get ± the grid diagonal.
pub fn signed_distance(mask: &BoneMask) -> Vec<f32> {
    let dims = mask.dims();
    let w = axis_weights(mask.grid.voxel_size_mm);
    let half = 0.5 * w.iter().cloned().fold(f64::INFINITY, f64::min).sqrt() as f32;
    let far = ((dims.nx * dims.nx + dims.ny * dims.ny + dims.nz * dims.nz) as f64).sqrt() as f32;
    let marrow: Vec<bool> = mask.voxels.par_iter().map(|&b| !b).collect();
    let to_marrow = squared_edt_units(dims, w, &marrow, Border::Ignored);
    let to_bone = squared_edt_units(dims, w, &mask.voxels, Border::Ignored);
    mask.voxels
        .par_iter()
        .zip(&to_marrow)
        .zip(&to_bone)
        .map(|((&bone, &dm), &db)| {
            if bone {
                -(dm.sqrt() - half).min(far)
            } else {
                (db.sqrt() - half).min(far)
            }
        })
        .collect()
}

/// The 6-neighbours of voxel `i` inside the grid.
pub(crate) fn neighbours6(dims: Dims, i: usize) -> impl Iterator<Item = usize> {
    let [x, y, z] = dims.coords(i);
    let (sx, sy) = (1, dims.nx);
    let sz = dims.nx * dims.ny;
    [
        (x > 0).then(|| i - sx),
        (x + 1 < dims.nx).then(|| i + sx),
        (y > 0).then(|| i - sy),
        (y + 1 < dims.ny).then(|| i + sy),
        (z > 0).then(|| i - sz),
        (z + 1 < dims.nz).then(|| i + sz),
    ]
    .into_iter()
    .flatten()
}

/// Bone voxels with at least one marrow 6-neighbour (the voxelised bone surface).
pub fn surface_voxel_count(mask: &BoneMask) -> usize {
    let dims = mask.dims();
    (0..mask.voxels.len())
        .into_par_iter()
        .filter(|&i| mask.voxels[i] && neighbours6(dims, i).any(|j| !mask.voxels[j]))
        .count()
}

/// What one volume-constrained move did.
#[derive(Clone, Debug)]
pub struct MoveOutcome {
    /// The bone of the moved surface, one 6-connected component of exactly the target count.
    pub mask: BoneMask,
    /// The moved level set; `{φ < 0}` equals `mask`.
    pub phi: Vec<f32>,
    /// The Lagrange multiplier λ (voxels per move): the uniform part of the outward normal
    /// speed, φ_new = φ + λ − gain·s, that makes the volume constraint hold.
    pub lambda_voxels: f64,
    /// Bone voxels cut off from the main component by the move and removed.
    pub islands_removed: usize,
    /// Marrow voxels next to the main component turned to bone to make up for the islands.
    pub regrown: usize,
    /// Voxels of the reference structure's cavities formed by this move (0 without a
    /// reference or in a loss; see [`move_to_count_refilling`]).
    pub refilled: usize,
}

/// Moves the surface with the normal speed `λ − gain·s` (bone forms where the stimulus `s` is
/// high and resorbs where it is low, after Allaire, Jouve & Toader 2004, J Comput Phys
/// 194:363) and chooses the Lagrange multiplier λ so that exactly `target_count` voxels are
/// bone.
///
/// The move is one-sided, as a remodeling phase is either disuse or recovery: towards a
/// smaller volume only resorption acts, φ_new = φ + max(0, λ − gain·s); towards a larger one
/// only formation, φ_new = φ + min(0, λ − gain·s). A net loss therefore never builds bone and a
/// net gain never removes it (resorption in disuse cannot stiffen the structure), and the
/// stimulus decides where the change happens: the least-loaded surfaces first in a loss, the
/// most loaded first in a gain. The stimulus part of the speed still ranges over ±gain voxels,
/// so a move's largest local motion is about λ + gain.
///
/// λ is not bisected: with ψ = φ − gain·s, the bone of φ_new is the current bone with the
/// `target_count` smallest ψ (loss) or the current bone plus the marrow voxels of smallest ψ
/// (gain), ties broken by voxel index so the result is deterministic; λ is minus the
/// mid-point between the last selected and the first unselected ψ. Bone cut off from the
/// largest 6-connected component (the connectivity of
/// [`crate::volume::segment::largest_component`] and of Conn.D) is removed, and the volume lost
/// with it is made up by growing the main component into neighbouring voxels in order of
/// increasing ψ (a best-first flood, so the count is met to the voxel and no new island can
/// appear). In a loss the regrowth may only restore voxels that were bone before the move.
pub fn move_to_count(
    mask: &BoneMask,
    phi: &[f32],
    stimulus: &[f32],
    gain_voxels: f64,
    target_count: usize,
) -> MoveOutcome {
    move_to_count_refilling(mask, phi, stimulus, gain_voxels, target_count, None)
}

/// [`move_to_count`] with coupled remodeling against a reference structure (Parfitt 1994,
/// J Cell Biochem 55:273; Frost 1964): in a move towards a larger volume, the marrow voxels
/// that are bone in `reference` (the cavities resorption dug into the reference structure)
/// are formed first, in order of increasing ψ = φ − gain·s (nearest the surface and most
/// loaded first), and only when they are all refilled does formation go to the other surface
/// voxels, again by ψ. The regrowth that makes up for removed islands follows the same
/// priority. A move towards a smaller volume is the plain one (resorption is not coupled to a
/// reference), and with `reference = None` the whole move is [`move_to_count`].
///
/// `reference` must be on the grid of `mask`.
pub fn move_to_count_refilling(
    mask: &BoneMask,
    phi: &[f32],
    stimulus: &[f32],
    gain_voxels: f64,
    target_count: usize,
    reference: Option<&BoneMask>,
) -> MoveOutcome {
    let n = phi.len();
    let gain = gain_voxels as f32;
    let loss = target_count < mask.count();
    let psi: Vec<f32> = phi
        .par_iter()
        .zip(stimulus)
        .map(|(&p, &s)| p - gain * s)
        .collect();
    // Selection key: the phase that may not change in this move sorts to its end.
    let key: Vec<f32> = psi
        .par_iter()
        .zip(&mask.voxels)
        .map(|(&p, &bone)| match (loss, bone) {
            (true, false) => f32::INFINITY,
            (false, true) => f32::NEG_INFINITY,
            _ => p,
        })
        .collect();
    // Priority class, compared before the key. In a gain with a reference: 0 = bone (kept),
    // 1 = a cavity of the reference (refilled first), 2 = other marrow. Otherwise all 0 (the
    // key alone orders, the phase that may not change sorting to its end).
    let coupled = !loss && reference.is_some();
    let class: Vec<u8> = (0..n)
        .map(|i| match reference {
            Some(r) if coupled && !mask.voxels[i] => {
                if r.voxels[i] {
                    1
                } else {
                    2
                }
            }
            _ => 0,
        })
        .collect();
    let target = target_count.clamp(1, n);
    let cmp = |a: &u32, b: &u32| {
        class[*a as usize]
            .cmp(&class[*b as usize])
            .then(key[*a as usize].total_cmp(&key[*b as usize]))
            .then(a.cmp(b))
    };
    let mut order: Vec<u32> = (0..n as u32).collect();
    let theta = if target < n {
        let (below, nth, _) = order.select_nth_unstable_by(target, cmp);
        // λ is the level of the class the selection boundary falls in.
        let boundary_class = class[*nth as usize];
        let last_in = below
            .iter()
            .filter(|&&i| class[i as usize] == boundary_class)
            .map(|&i| key[i as usize])
            .fold(f32::NEG_INFINITY, f32::max);
        let first_out = key[*nth as usize];
        match (last_in.is_finite(), first_out.is_finite()) {
            (true, true) => 0.5 * (last_in + first_out),
            (true, false) => last_in + 0.5,
            (false, true) => first_out - 0.5,
            (false, false) => 0.0,
        }
    } else {
        psi.iter().cloned().fold(f32::NEG_INFINITY, f32::max) + 1.0
    };
    let mut selected = vec![false; n];
    for &i in &order[..target] {
        selected[i as usize] = true;
    }
    drop(order);
    drop(key);
    let lambda = -theta;
    let mut phi_new: Vec<f32> = phi
        .par_iter()
        .zip(stimulus)
        .zip(&selected)
        .map(|((&p, &s), &bone)| {
            let speed = lambda - gain * s;
            let v = if loss {
                p + speed.max(0.0)
            } else {
                p + speed.min(0.0)
            };
            if bone {
                v.min(-SIGN_MARGIN_VOXELS)
            } else {
                v.max(SIGN_MARGIN_VOXELS)
            }
        })
        .collect();
    let moved = BoneMask {
        grid: mask.grid,
        voxels: selected,
    };
    let mut main = largest_component(&moved);
    let islands_removed = target - main.count();
    for (i, (&was, &kept)) in moved.voxels.iter().zip(&main.voxels).enumerate() {
        if was && !kept {
            phi_new[i] = phi_new[i].max(SIGN_MARGIN_VOXELS);
        }
    }
    let allowed = |i: usize| !loss || mask.voxels[i];
    let regrown = grow_best_first(
        &mut main,
        &mut phi_new,
        &psi,
        &class,
        islands_removed,
        allowed,
    );
    let refilled = if coupled {
        (0..n)
            .into_par_iter()
            .filter(|&i| class[i] == 1 && main.voxels[i])
            .count()
    } else {
        0
    };
    MoveOutcome {
        mask: main,
        phi: phi_new,
        lambda_voxels: f64::from(lambda),
        islands_removed,
        regrown,
        refilled,
    }
}

/// Adds `count` marrow voxels 6-adjacent to the (connected) bone of `mask` and `allowed`,
/// lowest `class` first, then smallest `psi` (ties by index). Returns the number added (less
/// than `count` only if the allowed marrow runs out).
fn grow_best_first(
    mask: &mut BoneMask,
    phi: &mut [f32],
    psi: &[f32],
    class: &[u8],
    count: usize,
    allowed: impl Fn(usize) -> bool,
) -> usize {
    if count == 0 {
        return 0;
    }
    let dims = mask.dims();
    let mut queued = vec![false; mask.voxels.len()];
    let mut heap = BinaryHeap::new();
    let key = |i: usize| Reverse((class[i], psi[i].to_bits() ^ sign_flip(psi[i]), i));
    for i in 0..mask.voxels.len() {
        if mask.voxels[i] {
            for j in neighbours6(dims, i) {
                if !mask.voxels[j] && !queued[j] && allowed(j) {
                    queued[j] = true;
                    heap.push(key(j));
                }
            }
        }
    }
    let mut added = 0;
    while added < count {
        let Some(Reverse((_, _, i))) = heap.pop() else {
            break;
        };
        mask.voxels[i] = true;
        phi[i] = phi[i].min(-SIGN_MARGIN_VOXELS);
        added += 1;
        for j in neighbours6(dims, i) {
            if !mask.voxels[j] && !queued[j] && allowed(j) {
                queued[j] = true;
                heap.push(key(j));
            }
        }
    }
    added
}

/// Maps an f32's bits so that unsigned comparison orders like `f32::total_cmp`.
fn sign_flip(v: f32) -> u32 {
    if v.to_bits() >> 31 == 1 {
        u32::MAX
    } else {
        1 << 31
    }
}

/// Voxels bone in `a` but not in the main 6-connected component of `a`.
pub fn island_voxels(mask: &BoneMask) -> usize {
    mask.count() - largest_component(mask).count()
}

/// The Sørensen–Dice coefficient 2|A ∩ B| / (|A| + |B|) of two masks on the same grid.
pub fn dice(a: &BoneMask, b: &BoneMask) -> f64 {
    let both = a
        .voxels
        .par_iter()
        .zip(&b.voxels)
        .filter(|(x, y)| **x && **y)
        .count();
    let total = a.count() + b.count();
    if total == 0 {
        1.0
    } else {
        2.0 * both as f64 / total as f64
    }
}
