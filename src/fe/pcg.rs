//! Preconditioned conjugate gradients (Hestenes & Stiefel 1952; Saad 2003, Alg. 9.1) with a
//! cancel token and progress reports. β is the flexible (Polak-Ribière) form of Notay (2000,
//! SIAM J Sci Comput 22:1444), β = zₖ₊₁ᵀ(rₖ₊₁ − rₖ) / zₖᵀrₖ, which equals the classical β for
//! an exactly symmetric preconditioner and keeps CG robust when the preconditioner is applied
//! in single precision. rₖ₊₁ − rₖ = −α A p, so no extra vector is needed.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::multigrid::dot;

/// Chunk length of the fused reductions (fixed, so results do not depend on the thread count).
const CHUNK: usize = 8192;

/// One progress report of an iterative solve.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SolverProgress {
    pub iteration: usize,
    /// ‖b − A x‖₂ / ‖b‖₂.
    pub relative_residual: f64,
}

/// How a PCG run ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PcgOutcome {
    Converged {
        iterations: usize,
        relative_residual: f64,
    },
    NotConverged {
        iterations: usize,
        relative_residual: f64,
    },
    Cancelled {
        iterations: usize,
        relative_residual: f64,
    },
    /// pᵀAp ≤ 0: the operator is not positive definite on the free DOFs.
    Breakdown { iterations: usize },
}

/// Solves `A x = b` from the initial guess in `x`.
///
/// `apply(x, y)` computes `y = A x`; `precondition(r, z)` computes `z = M⁻¹ r`. Both must keep
/// constrained entries at zero. Convergence: ‖b − A x‖₂ ≤ `tolerance` · ‖b‖₂.
#[allow(clippy::too_many_arguments)]
pub fn pcg(
    apply: &dyn Fn(&[f64], &mut [f64]),
    precondition: &mut dyn FnMut(&[f64], &mut [f64]),
    b: &[f64],
    x: &mut [f64],
    tolerance: f64,
    max_iterations: usize,
    cancel: Option<&AtomicBool>,
    progress: &mut dyn FnMut(SolverProgress),
) -> PcgOutcome {
    let n = b.len();
    let b_norm = dot(b, b).sqrt();
    if b_norm == 0.0 {
        x.par_iter_mut().for_each(|v| *v = 0.0);
        return PcgOutcome::Converged {
            iterations: 0,
            relative_residual: 0.0,
        };
    }
    let mut r = vec![0.0; n];
    apply(x, &mut r);
    r.par_iter_mut().zip(b).for_each(|(r, &b)| *r = b - *r);
    let mut rel = dot(&r, &r).sqrt() / b_norm;
    progress(SolverProgress {
        iteration: 0,
        relative_residual: rel,
    });
    if rel <= tolerance {
        return PcgOutcome::Converged {
            iterations: 0,
            relative_residual: rel,
        };
    }
    let mut z = vec![0.0; n];
    precondition(&r, &mut z);
    let mut p = z.clone();
    let mut rz = dot(&r, &z);
    let mut q = vec![0.0; n];
    for it in 1..=max_iterations {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return PcgOutcome::Cancelled {
                iterations: it - 1,
                relative_residual: rel,
            };
        }
        apply(&p, &mut q);
        let pq = dot(&p, &q);
        if pq.is_nan() || pq <= 0.0 {
            return PcgOutcome::Breakdown { iterations: it };
        }
        let alpha = rz / pq;
        // One sweep: x += αp, r −= αq and ‖r‖² (in fixed chunks, so the sum does not depend
        // on the thread count).
        let rr: f64 = x
            .par_chunks_mut(CHUNK)
            .zip(r.par_chunks_mut(CHUNK))
            .zip(p.par_chunks(CHUNK))
            .zip(q.par_chunks(CHUNK))
            .map(|(((x, r), p), q)| {
                let mut acc = 0.0;
                for i in 0..x.len() {
                    x[i] += alpha * p[i];
                    r[i] -= alpha * q[i];
                    acc += r[i] * r[i];
                }
                acc
            })
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        rel = rr.sqrt() / b_norm;
        progress(SolverProgress {
            iteration: it,
            relative_residual: rel,
        });
        if rel <= tolerance {
            return PcgOutcome::Converged {
                iterations: it,
                relative_residual: rel,
            };
        }
        precondition(&r, &mut z);
        // rᵀz and zᵀq in one sweep.
        let (rz_new, zq) = r
            .par_chunks(CHUNK)
            .zip(z.par_chunks(CHUNK))
            .zip(q.par_chunks(CHUNK))
            .map(|((r, z), q)| {
                let (mut a, mut b) = (0.0, 0.0);
                for i in 0..r.len() {
                    a += r[i] * z[i];
                    b += z[i] * q[i];
                }
                (a, b)
            })
            .collect::<Vec<(f64, f64)>>()
            .iter()
            .fold((0.0, 0.0), |acc, v| (acc.0 + v.0, acc.1 + v.1));
        let beta = -alpha * zq / rz;
        rz = rz_new;
        p.par_iter_mut()
            .zip(&z)
            .for_each(|(p, &z)| *p = z + beta * *p);
    }
    PcgOutcome::NotConverged {
        iterations: max_iterations,
        relative_residual: rel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Problem: the 1-D Laplacian tridiag(-1, 2, -1) of size 50 with b = 1 has the exact
    /// solution x_i = (i+1)(n-i)/2; unpreconditioned CG reaches it in at most n steps.
    /// Tolerance: 1e-10 relative residual, then 1e-8 on the solution.
    #[test]
    fn conjugate_gradients_solve_the_discrete_laplacian_exactly() {
        let n = 50;
        let apply = |x: &[f64], y: &mut [f64]| {
            for i in 0..n {
                let l = if i > 0 { x[i - 1] } else { 0.0 };
                let r = if i + 1 < n { x[i + 1] } else { 0.0 };
                y[i] = 2.0 * x[i] - l - r;
            }
        };
        let mut ident = |r: &[f64], z: &mut [f64]| z.copy_from_slice(r);
        let b = vec![1.0; n];
        let mut x = vec![0.0; n];
        let out = pcg(
            &apply,
            &mut ident,
            &b,
            &mut x,
            1e-10,
            200,
            None,
            &mut |_| {},
        );
        assert!(matches!(out, PcgOutcome::Converged { iterations, .. } if iterations <= n));
        for i in 0..n {
            let exact = ((i + 1) * (n - i)) as f64 / 2.0;
            assert!(
                (x[i] - exact).abs() < 1e-8 * exact,
                "{i}: {} vs {exact}",
                x[i]
            );
        }
    }

    #[test]
    fn a_set_cancel_token_stops_before_the_first_iteration() {
        let apply = |x: &[f64], y: &mut [f64]| y.copy_from_slice(x);
        let mut ident = |r: &[f64], z: &mut [f64]| z.copy_from_slice(r);
        let cancel = AtomicBool::new(true);
        let mut x = vec![0.0; 4];
        let out = pcg(
            &apply,
            &mut ident,
            &[1.0; 4],
            &mut x,
            1e-12,
            10,
            Some(&cancel),
            &mut |_| {},
        );
        assert!(matches!(out, PcgOutcome::Cancelled { iterations: 0, .. }));
    }
}
