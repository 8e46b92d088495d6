//! Geometric multigrid preconditioner on the voxel grid.
//!
//! The scheme of Arbenz et al. (2008, Int J Numer Meth Eng 73:927, "A scalable multi-level
//! preconditioner for matrix-free µ-finite element analysis of human bone structures") and of
//! ParOSol (Flaig & Arbenz 2011): coarse levels merge 2×2×2 voxels, a coarse voxel exists when
//! any child does and carries the children's mean modulus ("E-averaging"); transfer operators
//! are trilinear interpolation (P) and its transpose (R = Pᵀ); smoothing is Chebyshev-
//! accelerated Jacobi (Adams et al. 2003, J Comput Phys 188:593), which is symmetric and fully
//! parallel; the coarsest level is solved exactly by a dense Cholesky factorisation. With equal
//! pre- and post-smoothing the V-cycle is a symmetric positive definite preconditioner, as
//! conjugate gradients require.
//!
//! The whole V-cycle runs in single precision (the outer CG stays in double precision and
//! uses the flexible β of Notay 2000 to absorb the round-off asymmetry), which halves the
//! memory traffic and doubles the SIMD width of the element kernel.

use nalgebra::{Cholesky, DMatrix, DVector, Dyn};
use rayon::prelude::*;

use super::bc::ConstraintSpec;
use super::element::Material;
use super::model::VoxelModel;
use super::operator::{Real, StiffnessOperator};

/// Precision of the preconditioner.
type P = f32;

/// Power iterations of the λ_max(D⁻¹A) estimate. An estimate well below the true λ_max leaves
/// the modes above the Chebyshev interval amplified, and the preconditioner indefinite there:
/// with 15 iterations and a safety factor of 1.1, PCG stalled at a relative residual of 1.4e-4
/// on a real trabecular cube
/// (`verification::multigrid_converges_on_the_real_cube_whose_spectrum_was_underestimated`).
/// After 40 iterations the estimate is close enough to be used as it is
/// ([`MultigridParams::upper_factor`] 1.0): the smoother still damps modes just above it, and
/// on the ParOSol benchmark volume the iteration count is the old one (29; 32 with 1.05).
const POWER_ITERATIONS: usize = 40;

/// Smallest slice a parallel vector operation splits into: below it the coordination costs more
/// than the work (the coarse levels are small).
const MIN_LEN: usize = 16 * 1024;

/// Tuning of the multigrid cycle. The defaults (K-cycle below levels 0 and 1, plain cycles
/// deeper; Chebyshev degree 4 on the finest level and 10 on coarser ones, interval
/// [0.03, 1.0]·λ_max; direct solve below 1000 DOFs) were chosen by measuring iteration counts
/// and wall time on the micro-CT sample (see BENCHMARKS.md): the coarse levels are cheap, so
/// they get the heavy smoothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultigridParams {
    /// Chebyshev polynomial degree of each pre- and post-smoothing.
    pub smoothing_degree: usize,
    /// Chebyshev degree on the finest level, where each product costs most.
    pub fine_smoothing_degree: usize,
    /// Lower end of the Chebyshev interval as a fraction of the estimated λ_max(D⁻¹A).
    pub lower_fraction: f64,
    /// Safety factor applied to the power-iteration estimate of λ_max.
    pub upper_factor: f64,
    /// Stop coarsening once a level has at most this many DOFs; it is then solved directly.
    pub coarse_dofs: usize,
    /// Coarse corrections by the K-cycle (two flexible-CG steps per coarse level) instead of
    /// one V-cycle visit.
    pub krylov_cycle: bool,
    /// Deepest level whose coarse correction uses the K-cycle (coarser ones use one cycle).
    pub krylov_depth: usize,
}

impl Default for MultigridParams {
    fn default() -> Self {
        Self {
            smoothing_degree: 10,
            fine_smoothing_degree: 4,
            lower_fraction: 0.03,
            upper_factor: 1.0,
            coarse_dofs: 1000,
            krylov_cycle: true,
            krylov_depth: 2,
        }
    }
}

/// One grid level: the operator, its constrained DOFs and the smoother's data.
struct Level {
    op: StiffnessOperator,
    fixed: Vec<bool>,
    /// 1 / diag(K) on free DOFs, 0 on constrained DOFs.
    inv_diag: Vec<P>,
    /// Chebyshev interval.
    lambda_min: f64,
    lambda_max: f64,
    // Scratch vectors.
    b: Vec<P>,
    x: Vec<P>,
    r: Vec<P>,
    d: Vec<P>,
    ad: Vec<P>,
    /// Scratch of the K-cycle when this level is solved by it (empty otherwise).
    krylov: KrylovScratch,
}

#[derive(Default)]
struct KrylovScratch {
    b0: Vec<P>,
    c1: Vec<P>,
    v1: Vec<P>,
    r1: Vec<P>,
}

enum CoarseSolver {
    /// Cholesky factor of K restricted to the free DOFs `free`.
    Direct {
        free: Vec<usize>,
        factor: Cholesky<f64, Dyn>,
    },
    /// The coarse matrix was singular or too large: fall back to many smoothing steps.
    Smoothing { degree: usize },
}

/// A multigrid V-cycle preconditioner for a voxel model with given constraints.
pub struct Multigrid {
    levels: Vec<Level>,
    coarse: CoarseSolver,
    params: MultigridParams,
}

impl Multigrid {
    /// Builds the hierarchy under `fine` (which stays level 0's operator).
    pub fn new(
        fine: StiffnessOperator,
        fine_fixed: Vec<bool>,
        spec: &ConstraintSpec,
        material: &Material,
        params: MultigridParams,
    ) -> Self {
        let mut levels = vec![Level::new(fine, fine_fixed)];
        let mut level_spec = spec.clone();
        loop {
            let last = levels.last().expect("at least one level");
            let dims = last.op.model.dims;
            if last.op.dof_count() <= params.coarse_dofs
                || (dims.nx <= 2 && dims.ny <= 2 && dims.nz <= 2)
                || levels.len() >= 12
            {
                break;
            }
            let coarse_model: VoxelModel = last.op.model.coarsen();
            level_spec = level_spec.coarsen();
            let fixed = level_spec.fixed_dofs(&coarse_model);
            let op = StiffnessOperator::new(coarse_model, material);
            levels.push(Level::new(op, fixed));
        }
        for level in levels.iter_mut() {
            level.estimate_spectrum(&params);
        }
        let coarse = CoarseSolver::new(levels.last().expect("levels"), &params);
        Self {
            levels,
            coarse,
            params,
        }
    }

    pub fn level_count(&self) -> usize {
        self.levels.len()
    }

    /// DOFs per level, finest first.
    pub fn level_dofs(&self) -> Vec<usize> {
        self.levels.iter().map(|l| l.op.dof_count()).collect()
    }

    /// True when the coarsest level is solved by Cholesky factorisation.
    pub fn has_direct_coarse_solve(&self) -> bool {
        matches!(self.coarse, CoarseSolver::Direct { .. })
    }

    /// The level-0 operator.
    pub fn fine_operator(&self) -> &StiffnessOperator {
        &self.levels[0].op
    }

    /// Constrained-DOF flags of level 0.
    pub fn fine_fixed(&self) -> &[bool] {
        &self.levels[0].fixed
    }

    /// `y = K x` on level 0 with constrained rows zeroed (the operator of the free DOFs).
    pub fn apply_fine(&self, x: &[f64], y: &mut [f64]) {
        let l = &self.levels[0];
        l.op.apply(x, y);
        mask(y, &l.fixed);
    }

    /// `z = M⁻¹ r`: one V-cycle. `r` must be zero on constrained DOFs.
    pub fn precondition(&mut self, r: &[f64], z: &mut [f64]) {
        let n = self.levels.len();
        self.levels[0]
            .b
            .par_iter_mut()
            .with_min_len(MIN_LEN)
            .zip(r)
            .for_each(|(b, &r)| *b = r as P);
        self.vcycle(0, n);
        z.par_iter_mut()
            .with_min_len(MIN_LEN)
            .zip(&self.levels[0].x)
            .for_each(|(z, &x)| *z = x as f64);
    }

    fn vcycle(&mut self, l: usize, n: usize) {
        let degree = if l == 0 {
            self.params.fine_smoothing_degree
        } else {
            self.params.smoothing_degree
        };
        if l + 1 == n {
            let level = &mut self.levels[l];
            match &self.coarse {
                CoarseSolver::Direct { free, factor } => {
                    let rhs =
                        DVector::from_iterator(free.len(), free.iter().map(|&i| level.b[i] as f64));
                    let sol = factor.solve(&rhs);
                    level.x.iter_mut().for_each(|v| *v = 0.0);
                    for (k, &i) in free.iter().enumerate() {
                        level.x[i] = sol[k] as P;
                    }
                }
                CoarseSolver::Smoothing { degree } => level.chebyshev(*degree, true, false),
            }
            return;
        }
        let (head, tail) = self.levels.split_at_mut(l + 1);
        let fine = &mut head[l];
        let coarse = &mut tail[0];
        fine.chebyshev(degree, true, true);
        restrict(
            &fine.op.model,
            &fine.r,
            &coarse.op.model,
            &coarse.fixed,
            &mut coarse.b,
        );
        if self.params.krylov_cycle && l < self.params.krylov_depth && l + 2 < n {
            self.krylov_coarse_correction(l + 1, n);
        } else {
            self.vcycle(l + 1, n);
        }
        let (head, tail) = self.levels.split_at_mut(l + 1);
        let fine = &mut head[l];
        let coarse = &tail[0];
        prolongate_add(
            &coarse.op.model,
            &coarse.x,
            &fine.op.model,
            &fine.fixed,
            &mut fine.x,
        );
        fine.chebyshev(degree, false, false);
    }

    /// The coarse correction of the K-cycle (Notay & Vassilevski 2008, Numer Linear Algebra
    /// Appl 15:473, "Recursive Krylov-based multigrid cycles"): two steps of flexible CG on
    /// `A_c x = b_c`, each preconditioned by one cycle on level `c`. It gives W-cycle
    /// convergence while staying positive definite when the coarse operators are not Galerkin
    /// products (a plain W-cycle over E-averaged coarse grids can lose definiteness, and CG
    /// then stagnates). Leaves the correction in `levels[c].x`.
    fn krylov_coarse_correction(&mut self, c: usize, n: usize) {
        // Scratch vectors live with the level, taken out for the duration of the call.
        let len = self.levels[c].op.dof_count();
        let mut k = std::mem::take(&mut self.levels[c].krylov);
        for v in [&mut k.b0, &mut k.c1, &mut k.v1, &mut k.r1] {
            v.resize(len, 0.0);
        }
        k.b0.copy_from_slice(&self.levels[c].b);
        self.vcycle(c, n);
        let level = &mut self.levels[c];
        k.c1.copy_from_slice(&level.x);
        level.apply(&k.c1, &mut k.v1);
        let rho1 = dot(&k.c1, &k.v1);
        let alpha1 = dot(&k.c1, &k.b0);
        if rho1.is_nan() || rho1 <= 0.0 {
            level.krylov = k;
            return; // keep the plain cycle's correction
        }
        let a = (alpha1 / rho1) as P;
        level
            .b
            .par_iter_mut()
            .with_min_len(MIN_LEN)
            .zip(&k.b0)
            .zip(&k.v1)
            .for_each(|((r, &b), &v)| *r = b - a * v);
        k.r1.copy_from_slice(&level.b);
        self.vcycle(c, n);
        let level = &mut self.levels[c];
        let (x, ad) = (&level.x, &mut level.ad);
        level.op.apply(x, ad);
        mask(&mut level.ad, &level.fixed);
        let gamma = dot(&level.x, &k.v1);
        let beta = dot(&level.x, &level.ad);
        let alpha2 = dot(&level.x, &k.r1);
        let rho2 = beta - gamma * gamma / rho1;
        let (w1, w2) = if rho2 > 1e-12 * beta.abs() {
            (
                alpha1 / rho1 - gamma * alpha2 / (rho1 * rho2),
                alpha2 / rho2,
            )
        } else {
            (alpha1 / rho1, 0.0)
        };
        let (w1, w2) = (w1 as P, w2 as P);
        level
            .x
            .par_iter_mut()
            .with_min_len(MIN_LEN)
            .zip(&k.c1)
            .for_each(|(x, &c)| *x = w1 * c + w2 * *x);
        level.krylov = k;
    }

    /// Approximate memory held by the hierarchy (bytes), excluding level 0's model.
    pub fn memory_bytes(&self) -> usize {
        let mut total = 0;
        for (i, l) in self.levels.iter().enumerate() {
            let n = l.op.dof_count();
            total += n * (6 * std::mem::size_of::<P>() + 1); // b x r d ad inv_diag + fixed
            total += l.krylov.b0.capacity() * 4 * std::mem::size_of::<P>();
            if i > 0 {
                let m = &l.op.model;
                total += m.node_of_grid.len() * 4
                    + m.grid_of_node.len() * 8
                    + m.elements.len() * (32 + 8 + 4);
            }
        }
        if let CoarseSolver::Direct { free, .. } = &self.coarse {
            total += free.len() * free.len() * 8;
        }
        total
    }
}

impl Level {
    fn new(op: StiffnessOperator, fixed: Vec<bool>) -> Self {
        let n = op.dof_count();
        let inv_diag = op
            .diagonal()
            .iter()
            .zip(&fixed)
            .map(|(&d, &f)| if f || d <= 0.0 { 0.0 } else { (1.0 / d) as P })
            .collect();
        Self {
            op,
            fixed,
            inv_diag,
            lambda_min: 0.0,
            lambda_max: 0.0,
            b: vec![0.0; n],
            x: vec![0.0; n],
            r: vec![0.0; n],
            d: vec![0.0; n],
            ad: vec![0.0; n],
            krylov: KrylovScratch::default(),
        }
    }

    fn apply(&self, x: &[P], y: &mut [P]) {
        self.op.apply(x, y);
        mask(y, &self.fixed);
    }

    /// λ_max(D⁻¹A) by power iteration from a fixed pseudo-random start (deterministic).
    fn estimate_spectrum(&mut self, params: &MultigridParams) {
        let n = self.op.dof_count();
        let mut v: Vec<P> = (0..n)
            .map(|i| {
                let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                (((h >> 11) as f64 / (1u64 << 53) as f64) - 0.5) as P
            })
            .zip(&self.inv_diag)
            .map(|(v, &d)| if d == 0.0 { 0.0 } else { v })
            .collect();
        let mut w = vec![0.0; n];
        let mut lambda = 0.0;
        for _ in 0..POWER_ITERATIONS {
            let norm = dot(&v, &v).sqrt();
            if norm == 0.0 {
                break;
            }
            let inv = (1.0 / norm) as P;
            v.par_iter_mut()
                .with_min_len(MIN_LEN)
                .for_each(|a| *a *= inv);
            self.apply(&v, &mut w);
            w.par_iter_mut()
                .with_min_len(MIN_LEN)
                .zip(&self.inv_diag)
                .for_each(|(a, &d)| *a *= d);
            lambda = dot(&v, &w);
            std::mem::swap(&mut v, &mut w);
        }
        self.lambda_max = params.upper_factor * lambda.max(f64::MIN_POSITIVE);
        self.lambda_min = params.lower_fraction * self.lambda_max;
    }

    /// Chebyshev-Jacobi smoothing of `A x = b` (Saad, *Iterative Methods for Sparse Linear
    /// Systems*, 2nd ed., Alg. 12.1). `zero_start` takes x = 0 (saving one product);
    /// `want_residual` leaves `r = b − A x` for the restriction.
    fn chebyshev(&mut self, degree: usize, zero_start: bool, want_residual: bool) {
        let theta = 0.5 * (self.lambda_max + self.lambda_min);
        let delta = 0.5 * (self.lambda_max - self.lambda_min);
        let sigma = theta / delta;
        let mut rho = 1.0 / sigma;
        let inv_theta = (1.0 / theta) as P;
        // Passes are fused: the first correction d = D⁻¹r/θ is added to x in the same sweep,
        // the residual update applies the constraint mask, and each later d is added to x as
        // it is formed.
        if zero_start {
            self.r.copy_from_slice(&self.b);
        } else {
            let (x, ad) = (&self.x, &mut self.ad);
            self.op.apply(x, ad);
            self.r
                .par_iter_mut()
                .with_min_len(MIN_LEN)
                .zip(&self.b)
                .zip(&self.ad)
                .zip(&self.fixed)
                .for_each(|(((r, &b), &a), &f)| *r = if f { 0.0 } else { b - a });
        }
        self.d
            .par_iter_mut()
            .with_min_len(MIN_LEN)
            .zip(&mut self.x)
            .zip(&self.r)
            .zip(&self.inv_diag)
            .for_each(|(((d, x), &r), &m)| {
                *d = m * r * inv_theta;
                *x = if zero_start { *d } else { *x + *d };
            });
        for k in 0..degree {
            let last = k + 1 == degree;
            if last && !want_residual {
                break;
            }
            self.op.apply(&self.d, &mut self.ad);
            self.r
                .par_iter_mut()
                .with_min_len(MIN_LEN)
                .zip(&self.ad)
                .zip(&self.fixed)
                .for_each(|((r, &a), &f)| *r = if f { 0.0 } else { *r - a });
            if last {
                break;
            }
            let rho_new = 1.0 / (2.0 * sigma - rho);
            let c1 = (rho_new * rho) as P;
            let c2 = (2.0 * rho_new / delta) as P;
            self.d
                .par_iter_mut()
                .with_min_len(MIN_LEN)
                .zip(&mut self.x)
                .zip(&self.r)
                .zip(&self.inv_diag)
                .for_each(|(((d, x), &r), &m)| {
                    *d = c1 * *d + c2 * m * r;
                    *x += *d;
                });
            rho = rho_new;
        }
    }
}

impl CoarseSolver {
    fn new(level: &Level, params: &MultigridParams) -> Self {
        let n = level.op.dof_count();
        let free: Vec<usize> = (0..n).filter(|&i| !level.fixed[i]).collect();
        let fallback = CoarseSolver::Smoothing {
            degree: 8 * params.smoothing_degree.max(2),
        };
        if free.is_empty() || free.len() > 2 * params.coarse_dofs.max(1500) {
            return fallback;
        }
        let dense = level.op.assemble_dense();
        let m = DMatrix::from_fn(free.len(), free.len(), |i, j| dense[free[i] * n + free[j]]);
        match Cholesky::new(m) {
            Some(factor) => CoarseSolver::Direct { free, factor },
            None => fallback,
        }
    }
}

/// Zeroes the constrained entries.
pub fn mask<T: Real>(v: &mut [T], fixed: &[bool]) {
    v.par_iter_mut()
        .with_min_len(MIN_LEN)
        .zip(fixed)
        .for_each(|(a, &f)| {
            if f {
                *a = T::ZERO
            }
        });
}

/// Dot product accumulated in f64, in fixed-size chunks so the result does not depend on the
/// number of threads.
pub fn dot<T: Real>(a: &[T], b: &[T]) -> f64 {
    a.par_chunks(8192)
        .zip(b.par_chunks(8192))
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(&p, &q)| p.to_f64() * q.to_f64())
                .sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum()
}

/// Interpolation stencil along one axis: fine node i takes coarse node i/2 (even i) or the
/// mean of i/2 and i/2 + 1 (odd i).
#[inline]
fn axis_parents(i: usize) -> ([usize; 2], [f64; 2], usize) {
    if i.is_multiple_of(2) {
        ([i / 2, 0], [1.0, 0.0], 1)
    } else {
        ([i / 2, i / 2 + 1], [0.5, 0.5], 2)
    }
}

/// `x_fine += P x_coarse`, constrained fine DOFs left untouched.
fn prolongate_add<T: Real>(
    coarse: &VoxelModel,
    xc: &[T],
    fine: &VoxelModel,
    fine_fixed: &[bool],
    xf: &mut [T],
) {
    xf.par_chunks_mut(3)
        .enumerate()
        .with_min_len(1024)
        .for_each(|(node, out)| {
            let [i, j, k] = fine.node_coords(node);
            let (pi, wi, ni) = axis_parents(i);
            let (pj, wj, nj) = axis_parents(j);
            let (pk, wk, nk) = axis_parents(k);
            let mut acc = [T::ZERO; 3];
            for c in 0..nk {
                for b in 0..nj {
                    for a in 0..ni {
                        if let Some(cn) = coarse.node_at(pi[a], pj[b], pk[c]) {
                            let w = T::from_f64(wi[a] * wj[b] * wk[c]);
                            for d in 0..3 {
                                acc[d] += w * xc[3 * cn + d];
                            }
                        }
                    }
                }
            }
            for d in 0..3 {
                if !fine_fixed[3 * node + d] {
                    out[d] += acc[d];
                }
            }
        });
}

/// `b_coarse = Pᵀ r_fine`, constrained coarse DOFs set to zero.
fn restrict<T: Real>(
    fine: &VoxelModel,
    rf: &[T],
    coarse: &VoxelModel,
    coarse_fixed: &[bool],
    bc: &mut [T],
) {
    bc.par_chunks_mut(3)
        .enumerate()
        .with_min_len(256)
        .for_each(|(node, out)| {
            let [ci, cj, ck] = coarse.node_coords(node);
            let mut acc = [T::ZERO; 3];
            for dk in -1i64..=1 {
                let k = 2 * ck as i64 + dk;
                if k < 0 {
                    continue;
                }
                let wk = if dk == 0 { 1.0 } else { 0.5 };
                for dj in -1i64..=1 {
                    let j = 2 * cj as i64 + dj;
                    if j < 0 {
                        continue;
                    }
                    let wj = if dj == 0 { 1.0 } else { 0.5 };
                    for di in -1i64..=1 {
                        let i = 2 * ci as i64 + di;
                        if i < 0 {
                            continue;
                        }
                        let wi = if di == 0 { 1.0 } else { 0.5 };
                        if let Some(fnode) = fine.node_at(i as usize, j as usize, k as usize) {
                            let w = T::from_f64(wi * wj * wk);
                            for d in 0..3 {
                                acc[d] += w * rf[3 * fnode + d];
                            }
                        }
                    }
                }
            }
            for d in 0..3 {
                out[d] = if coarse_fixed[3 * node + d] {
                    T::ZERO
                } else {
                    acc[d]
                };
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Dims;

    /// Property: restriction is exactly the transpose of prolongation, ⟨P xc, rf⟩ = ⟨xc, Pᵀ rf⟩,
    /// which makes the V-cycle symmetric. Tolerance 1e-12 relative.
    #[test]
    fn restriction_is_the_transpose_of_prolongation() {
        let dims = Dims::new(5, 4, 7);
        let mut s = 11u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let occ: Vec<bool> = (0..dims.len()).map(|_| rnd() < 0.6).collect();
        let fine = VoxelModel::new(dims, [1.0; 3], &occ, None);
        let coarse = fine.coarsen();
        let nf = fine.dof_count();
        let nc = coarse.dof_count();
        let xc: Vec<f64> = (0..nc).map(|_| rnd() - 0.5).collect();
        let rf: Vec<f64> = (0..nf).map(|_| rnd() - 0.5).collect();
        let mut pxc = vec![0.0f64; nf];
        prolongate_add(&coarse, &xc, &fine, &vec![false; nf], &mut pxc);
        let mut ptrf = vec![0.0f64; nc];
        restrict(&fine, &rf, &coarse, &vec![false; nc], &mut ptrf);
        let lhs = dot(&pxc, &rf);
        let rhs = dot(&xc, &ptrf);
        assert!(
            (lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    /// Property: prolongation reproduces linear fields exactly on active nodes (trilinear
    /// interpolation), so rigid-body and homogeneous modes survive the coarse correction.
    #[test]
    fn prolongation_reproduces_linear_fields() {
        let dims = Dims::new(6, 5, 4);
        let occ = vec![true; dims.len()];
        let fine = VoxelModel::new(dims, [1.0; 3], &occ, None);
        let coarse = fine.coarsen();
        let f = |c: [usize; 3]| 0.3 * c[0] as f64 - 0.2 * c[1] as f64 + 0.7 * c[2] as f64;
        let mut xc = vec![0.0f64; coarse.dof_count()];
        for n in 0..coarse.node_count() {
            let c = coarse.node_coords(n);
            xc[3 * n] = f([2 * c[0], 2 * c[1], 2 * c[2]]);
        }
        let mut xf = vec![0.0f64; fine.dof_count()];
        prolongate_add(&coarse, &xc, &fine, &vec![false; fine.dof_count()], &mut xf);
        for n in 0..fine.node_count() {
            assert!((xf[3 * n] - f(fine.node_coords(n))).abs() < 1e-12);
        }
    }
}
