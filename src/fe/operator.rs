//! The matrix-free stiffness operator `y = K x`.
//!
//! Every voxel element shares one 24×24 stiffness (scaled per element on coarse levels), so K is
//! never assembled: each product gathers the 24 nodal values of an element, multiplies by the
//! element matrix and scatters the result. Elements of voxel layer z touch node layers z and
//! z+1 only, so all even layers can be processed in parallel without write conflicts, then all
//! odd layers (a two-colour scheme; the classic alternative, eight-colour element colouring,
//! needs eight passes). On x86-64 the element kernel is compiled twice, and the AVX2+FMA
//! version is picked at run time when the processor has it.

use rayon::prelude::*;

use super::element::{Material, element_stiffness};
use super::model::VoxelModel;

/// The floating-point types the operator works in: f64 for the CG iteration, f32 inside the
/// multigrid preconditioner (half the memory traffic, twice the SIMD width).
pub trait Real:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::iter::Sum
    + 'static
{
    const ZERO: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// The element stiffness in this type, stored by columns.
    fn k_cols(op: &StiffnessOperator) -> &[[Self; 24]; 24];
    /// `K_e x_e` with AVX2 + FMA intrinsics.
    ///
    /// # Safety
    /// The processor must support AVX2 and FMA.
    unsafe fn element_product_avx2(k_cols: &[[Self; 24]; 24], xe: &[Self; 24]) -> [Self; 24];
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
    fn k_cols(op: &StiffnessOperator) -> &[[Self; 24]; 24] {
        &op.k_cols
    }
    #[inline(always)]
    unsafe fn element_product_avx2(k_cols: &[[f64; 24]; 24], xe: &[f64; 24]) -> [f64; 24] {
        // SAFETY: forwarded from the caller.
        #[cfg(target_arch = "x86_64")]
        return unsafe { kernel_avx2::product_f64(k_cols, xe) };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("AVX2 kernels exist only on x86-64 ({k_cols:p}, {xe:p})")
    }
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
    fn k_cols(op: &StiffnessOperator) -> &[[Self; 24]; 24] {
        &op.k_cols32
    }
    #[inline(always)]
    unsafe fn element_product_avx2(k_cols: &[[f32; 24]; 24], xe: &[f32; 24]) -> [f32; 24] {
        // SAFETY: forwarded from the caller.
        #[cfg(target_arch = "x86_64")]
        return unsafe { kernel_avx2::product_f32(k_cols, xe) };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("AVX2 kernels exist only on x86-64 ({k_cols:p}, {xe:p})")
    }
}

/// The 24×24 element product with explicit AVX2/FMA registers: two independent accumulator
/// sets (even and odd columns) halve the FMA dependency chains, and the accumulators never
/// leave registers (the auto-vectorised loop kept them on the stack, ~4× slower).
#[cfg(target_arch = "x86_64")]
mod kernel_avx2 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn product_f32(k: &[[f32; 24]; 24], xe: &[f32; 24]) -> [f32; 24] {
        let mut a = [_mm256_setzero_ps(); 3];
        let mut b = [_mm256_setzero_ps(); 3];
        let mut j = 0;
        while j < 24 {
            let x0 = _mm256_set1_ps(xe[j]);
            let x1 = _mm256_set1_ps(xe[j + 1]);
            for r in 0..3 {
                // SAFETY: columns hold 24 floats; r*8+8 <= 24.
                unsafe {
                    a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(k[j].as_ptr().add(8 * r)), x0, a[r]);
                    b[r] = _mm256_fmadd_ps(_mm256_loadu_ps(k[j + 1].as_ptr().add(8 * r)), x1, b[r]);
                }
            }
            j += 2;
        }
        let mut out = [0f32; 24];
        for r in 0..3 {
            // SAFETY: out holds 24 floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * r), _mm256_add_ps(a[r], b[r])) };
        }
        out
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn product_f64(k: &[[f64; 24]; 24], xe: &[f64; 24]) -> [f64; 24] {
        let mut a = [_mm256_setzero_pd(); 6];
        let mut b = [_mm256_setzero_pd(); 6];
        let mut j = 0;
        while j < 24 {
            let x0 = _mm256_set1_pd(xe[j]);
            let x1 = _mm256_set1_pd(xe[j + 1]);
            for r in 0..6 {
                // SAFETY: columns hold 24 doubles; r*4+4 <= 24.
                unsafe {
                    a[r] = _mm256_fmadd_pd(_mm256_loadu_pd(k[j].as_ptr().add(4 * r)), x0, a[r]);
                    b[r] = _mm256_fmadd_pd(_mm256_loadu_pd(k[j + 1].as_ptr().add(4 * r)), x1, b[r]);
                }
            }
            j += 2;
        }
        let mut out = [0f64; 24];
        for r in 0..6 {
            // SAFETY: out holds 24 doubles.
            unsafe { _mm256_storeu_pd(out.as_mut_ptr().add(4 * r), _mm256_add_pd(a[r], b[r])) };
        }
        out
    }
}

/// `K x` for one [`VoxelModel`] and material.
pub struct StiffnessOperator {
    pub model: VoxelModel,
    /// Element stiffness stored by columns: `k_cols[j][i] = K_e[i][j]` (N/mm).
    k_cols: Box<[[f64; 24]; 24]>,
    /// The same in f32.
    k_cols32: Box<[[f32; 24]; 24]>,
}

struct SyncPtr<T>(*mut T);
impl<T> Clone for SyncPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SyncPtr<T> {}
// SAFETY: used only to scatter into disjoint node sets from parallel layer tasks (see `apply`).
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

impl StiffnessOperator {
    pub fn new(model: VoxelModel, material: &Material) -> Self {
        let k = element_stiffness(material, model.voxel_size_mm);
        let mut k_cols = Box::new([[0.0; 24]; 24]);
        let mut k_cols32 = Box::new([[0.0; 24]; 24]);
        for i in 0..24 {
            for j in 0..24 {
                k_cols[j][i] = k[i][j];
                k_cols32[j][i] = k[i][j] as f32;
            }
        }
        Self {
            model,
            k_cols,
            k_cols32,
        }
    }

    pub fn dof_count(&self) -> usize {
        self.model.dof_count()
    }

    /// The diagonal of K (one entry per DOF).
    pub fn diagonal(&self) -> Vec<f64> {
        let model = &self.model;
        let mut diagonal = vec![0.0; model.dof_count()];
        for (e, nodes) in model.elements.iter().enumerate() {
            let s = model.scale(e);
            for (a, &n) in nodes.iter().enumerate() {
                for c in 0..3 {
                    diagonal[3 * n as usize + c] += s * self.k_cols[3 * a + c][3 * a + c];
                }
            }
        }
        diagonal
    }

    /// The element stiffness entry `K_e[i][j]` (unit modulus scale).
    pub fn element_entry(&self, i: usize, j: usize) -> f64 {
        self.k_cols[j][i]
    }

    /// `y = K x` (all DOFs, no boundary conditions applied), in f64 or f32.
    pub fn apply<T: Real>(&self, x: &[T], y: &mut [T]) {
        assert_eq!(x.len(), self.dof_count());
        assert_eq!(y.len(), self.dof_count());
        y.par_iter_mut()
            .with_min_len(16 * 1024)
            .for_each(|v| *v = T::ZERO);
        let k_cols = T::k_cols(self);
        let ptr = SyncPtr(y.as_mut_ptr());
        let nz = self.model.dims.nz;
        // Small (coarse-level) models run on one thread: splitting costs more than it saves.
        let min_layers = if self.model.element_count() < 20_000 {
            nz
        } else {
            1
        };
        for parity in 0..2 {
            (0..nz.div_ceil(2))
                .into_par_iter()
                .with_min_len(min_layers)
                .for_each(|half| {
                    let z = 2 * half + parity;
                    if z >= nz {
                        return;
                    }
                    let range = self.model.layer_start[z]..self.model.layer_start[z + 1];
                    let scales = self.model.modulus_scale.as_ref().map(|s| &s[range.clone()]);
                    let elements = &self.model.elements[range];
                    // SAFETY: layers of equal parity share no nodes, so concurrent tasks write
                    // disjoint entries of y; every node index is < dof_count / 3 by construction.
                    unsafe { apply_elements_dispatch(elements, scales, k_cols, x, ptr) };
                });
        }
    }

    /// Assembles K densely (for tests and small coarse problems).
    pub fn assemble_dense(&self) -> Vec<f64> {
        let n = self.dof_count();
        let mut k = vec![0.0; n * n];
        for (e, nodes) in self.model.elements.iter().enumerate() {
            let s = self.model.scale(e);
            for a in 0..8 {
                for b in 0..8 {
                    for ci in 0..3 {
                        for cj in 0..3 {
                            let gi = 3 * nodes[a] as usize + ci;
                            let gj = 3 * nodes[b] as usize + cj;
                            k[gi * n + gj] += s * self.k_cols[3 * b + cj][3 * a + ci];
                        }
                    }
                }
            }
        }
        k
    }

    /// Nodal values of element `e` gathered from `x`.
    #[inline]
    pub fn gather(&self, e: usize, x: &[f64]) -> [f64; 24] {
        let mut xe = [0.0; 24];
        for (a, &n) in self.model.elements[e].iter().enumerate() {
            let n = 3 * n as usize;
            xe[3 * a..3 * a + 3].copy_from_slice(&x[n..n + 3]);
        }
        xe
    }

    /// `K_e x_e` for element `e` (including its modulus scale).
    pub fn element_product(&self, e: usize, xe: &[f64; 24]) -> [f64; 24] {
        let mut ye = [0.0; 24];
        for j in 0..24 {
            for i in 0..24 {
                ye[i] += self.k_cols[j][i] * xe[j];
            }
        }
        let s = self.model.scale(e);
        ye.map(|v| v * s)
    }
}

unsafe fn apply_elements_dispatch<T: Real>(
    elements: &[[u32; 8]],
    scales: Option<&[f32]>,
    k_cols: &[[T; 24]; 24],
    x: &[T],
    y: SyncPtr<T>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features were detected just above.
            return unsafe { apply_elements_avx2(elements, scales, k_cols, x, y) };
        }
    }
    unsafe { apply_elements::<T, false>(elements, scales, k_cols, x, y) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_elements_avx2<T: Real>(
    elements: &[[u32; 8]],
    scales: Option<&[f32]>,
    k_cols: &[[T; 24]; 24],
    x: &[T],
    y: SyncPtr<T>,
) {
    unsafe { apply_elements::<T, true>(elements, scales, k_cols, x, y) }
}

#[inline(always)]
unsafe fn apply_elements<T: Real, const FMA: bool>(
    elements: &[[u32; 8]],
    scales: Option<&[f32]>,
    k_cols: &[[T; 24]; 24],
    x: &[T],
    y: SyncPtr<T>,
) {
    for (k, nodes) in elements.iter().enumerate() {
        let mut xe = [T::ZERO; 24];
        for a in 0..8 {
            let n = 3 * nodes[a] as usize;
            // SAFETY: node numbers index x (checked by the caller's length assertion and the
            // model's construction).
            unsafe {
                xe[3 * a] = *x.get_unchecked(n);
                xe[3 * a + 1] = *x.get_unchecked(n + 1);
                xe[3 * a + 2] = *x.get_unchecked(n + 2);
            }
        }
        let ye = if FMA {
            // SAFETY: FMA is only true inside `apply_elements_avx2`, after feature detection.
            unsafe { T::element_product_avx2(k_cols, &xe) }
        } else {
            let mut ye = [T::ZERO; 24];
            for j in 0..24 {
                let xj = xe[j];
                let col = &k_cols[j];
                for i in 0..24 {
                    ye[i] += col[i] * xj;
                }
            }
            ye
        };
        let s = T::from_f64(scales.map_or(1.0, |s| s[k] as f64));
        for a in 0..8 {
            let n = 3 * nodes[a] as usize;
            // SAFETY: see `StiffnessOperator::apply`.
            unsafe {
                *y.0.add(n) += s * ye[3 * a];
                *y.0.add(n + 1) += s * ye[3 * a + 1];
                *y.0.add(n + 2) += s * ye[3 * a + 2];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Dims;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / ((1u64 << 53) as f64)
    }

    /// Property: the matrix-free product equals the assembled matrix times the vector, on small
    /// random grids with random per-element moduli. Tolerance 1e-12 relative (round-off).
    #[test]
    fn matrix_free_product_equals_assembled_product_on_random_grids() {
        let mut seed = 7u64;
        for trial in 0..12 {
            let dims = Dims::new(2 + trial % 3, 3, 2 + trial % 4);
            let occ: Vec<bool> = (0..dims.len()).map(|_| lcg(&mut seed) < 0.6).collect();
            let scale: Vec<f32> = (0..dims.len())
                .map(|_| 0.1 + lcg(&mut seed) as f32)
                .collect();
            let model = VoxelModel::new(dims, [0.3, 0.4, 0.5], &occ, Some(&scale));
            let op = StiffnessOperator::new(model.clone(), &Material::default());
            let n = op.dof_count();
            let x: Vec<f64> = (0..n).map(|_| lcg(&mut seed) - 0.5).collect();
            let mut y = vec![0.0; n];
            op.apply(&x, &mut y);
            let k = op.assemble_dense();
            let norm = y.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0);
            let diag = op.diagonal();
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let mut y32 = vec![0f32; n];
            op.apply(&x32, &mut y32);
            for i in 0..n {
                assert!(
                    (y32[i] as f64 - y[i]).abs() < 1e-5 * norm,
                    "f32 product, dof {i}"
                );
            }
            for i in 0..n {
                let yi: f64 = (0..n).map(|j| k[i * n + j] * x[j]).sum();
                assert!((yi - y[i]).abs() < 1e-12 * norm, "trial {trial} dof {i}");
                assert_eq!(diag[i], k[i * n + i]);
            }
        }
    }

    /// Property: K annihilates the six rigid-body modes of any voxel structure.
    /// Tolerance 1e-10 relative to ‖K‖·‖u‖ (round-off).
    #[test]
    fn stiffness_times_rigid_body_mode_is_zero() {
        let mut seed = 3u64;
        let dims = Dims::new(5, 4, 6);
        let occ: Vec<bool> = (0..dims.len()).map(|_| lcg(&mut seed) < 0.7).collect();
        let model = VoxelModel::new(dims, [0.02; 3], &occ, None);
        let op = StiffnessOperator::new(model.clone(), &Material::default());
        let n = op.dof_count();
        let kmax = op.diagonal().iter().cloned().fold(0.0, f64::max);
        for mode in 0..6 {
            let mut u = vec![0.0; n];
            for node in 0..model.node_count() {
                let c = model.node_coords(node);
                let p = [c[0] as f64 * 0.02, c[1] as f64 * 0.02, c[2] as f64 * 0.02];
                let v = match mode {
                    0..=2 => {
                        let mut t = [0.0; 3];
                        t[mode] = 1.0;
                        t
                    }
                    3 => [0.0, -p[2], p[1]],
                    4 => [p[2], 0.0, -p[0]],
                    _ => [-p[1], p[0], 0.0],
                };
                u[3 * node..3 * node + 3].copy_from_slice(&v);
            }
            let mut y = vec![0.0; n];
            op.apply(&u, &mut y);
            let umax = u.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let ymax = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(ymax < 1e-10 * kmax * umax * 27.0, "mode {mode}: {ymax}");
        }
    }
}
