//! Voxel micro finite-element analysis (design §2 "Voxel micro-FE").
//!
//! One 8-node trilinear hexahedron per bone voxel ([`element`]), linear isotropic elasticity,
//! a matrix-free stiffness operator parallel over voxel layers ([`operator`]), conjugate
//! gradients ([`pcg`]) preconditioned by a geometric multigrid V-cycle on the voxel grid
//! ([`multigrid`]), the boundary conditions of design §2 ([`bc`]) and the usual outputs:
//! displacements, element strains, stresses and strain energy density, reaction force,
//! apparent modulus, strain energy, and for `kubc` the apparent 6×6 stiffness.
//!
//! Units: lengths mm, forces N, stresses and moduli MPa, energies mJ (= N·mm), SED MPa (= mJ/mm³).

pub mod bc;
pub mod element;
pub mod model;
pub mod multigrid;
pub mod operator;
pub mod pcg;
pub mod plate;
pub mod reusable;

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

pub use bc::BoundaryCondition;
pub use element::Material;
pub use multigrid::MultigridParams;
pub use pcg::SolverProgress;
pub use plate::{PlateLoad, PlateLoadResponse, PlateSolution, solve_plate_loads};
pub use reusable::ReusableAxialProblem;

use crate::volume::BoneMask;
use bc::{ConstraintSpec, load_bearing_voxels};
use model::VoxelModel;
use multigrid::{Multigrid, dot, mask};
use operator::StiffnessOperator;
use pcg::{PcgOutcome, pcg};

/// Errors of the micro-FE solver.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum FeError {
    #[error("the volume contains no bone voxels")]
    EmptyMask,
    #[error("no bone connects the bottom face to the top face, so the structure carries no load")]
    NoLoadPath,
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("solve cancelled after {iterations} iterations")]
    Cancelled { iterations: usize },
    #[error(
        "not converged: relative residual {relative_residual:.3e} after {iterations} iterations"
    )]
    NotConverged {
        iterations: usize,
        relative_residual: f64,
    },
    #[error(
        "the stiffness matrix is not positive definite on the free DOFs (CG breakdown at iteration {iterations}); is part of the structure unconstrained?"
    )]
    Breakdown { iterations: usize },
}

/// The preconditioner of the CG solve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Preconditioner {
    /// Geometric multigrid V-cycle (the default).
    Multigrid(MultigridParams),
    /// Diagonal scaling only; kept for comparison benchmarks.
    Jacobi,
}

/// Iterative-solver settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SolverParams {
    /// Stop when ‖b − K u‖₂ ≤ tolerance · ‖b‖₂ on the free DOFs.
    pub tolerance: f64,
    pub max_iterations: usize,
    pub preconditioner: Preconditioner,
}

impl Default for SolverParams {
    fn default() -> Self {
        Self {
            tolerance: 1e-8,
            max_iterations: 20_000,
            preconditioner: Preconditioner::Multigrid(MultigridParams::default()),
        }
    }
}

/// Cancellation, progress reporting and warm start for a solve.
#[derive(Clone, Copy, Default)]
pub struct SolveControl<'a> {
    /// Checked every iteration; when set, the solve returns [`FeError::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
    /// Called after every CG iteration.
    pub progress: Option<&'a (dyn Fn(&SolverProgress) + Sync)>,
    /// Displacements of a previous solve on the same structure (DOF-ordered, as in
    /// [`AxialSolution::displacements_mm`]); ignored when the length differs.
    pub warm_start: Option<&'a [f64]>,
}

/// Axial loading: `strain` is the prescribed uz of the top face divided by the height
/// (negative = compression).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AxialLoad {
    pub bc: BoundaryCondition,
    pub strain: f64,
}

/// Per-element results (element order of the model; `voxel` gives each element's voxel).
#[derive(Clone, Debug, Default)]
pub struct ElementFields {
    /// Linear voxel index of each element.
    pub voxel: Vec<usize>,
    /// Element-average strain, Voigt `[xx, yy, zz, yz, xz, xy]`, engineering shear.
    pub strain: Vec<[f32; 6]>,
    /// Element-average stress (MPa), Voigt order.
    pub stress_mpa: Vec<[f32; 6]>,
    /// Element strain energy / element volume (MPa = mJ/mm³), exact for the element.
    pub sed_mpa: Vec<f32>,
}

/// Result of an axial solve.
#[derive(Clone, Debug)]
pub struct AxialSolution {
    pub bc: BoundaryCondition,
    pub dofs: usize,
    pub elements: usize,
    /// Bone voxels dropped because they cannot carry load (see [`bc::load_bearing_voxels`]).
    pub removed_elements: usize,
    pub iterations: usize,
    pub relative_residual: f64,
    /// Total z force on the top face (N); negative in compression.
    pub reaction_force_n: f64,
    /// Reaction / (box cross-section × strain) (MPa).
    pub e_app_mpa: f64,
    /// ½ uᵀ K u = Σ SED·V (mJ).
    pub strain_energy_mj: f64,
    /// ½ F u_top, the work of the top-face load (mJ); equals the strain energy at convergence.
    pub external_work_mj: f64,
    pub setup_seconds: f64,
    pub solve_seconds: f64,
    pub seconds: f64,
    /// Nodal displacements (mm), 3 per node, node order of the model.
    pub displacements_mm: Vec<f64>,
    /// SED per voxel (MPa), grid-indexed, 0 where there is no element.
    pub sed_mpa: Vec<f32>,
    pub element_fields: ElementFields,
    /// Multigrid levels used (1 for Jacobi).
    pub levels: usize,
    /// DOFs of each multigrid level, finest first.
    pub level_dofs: Vec<usize>,
    /// Bytes held by the solver's data structures (vectors, models, hierarchy).
    pub solver_memory_bytes: usize,
}

/// Result of the six KUBC load cases.
#[derive(Clone, Debug, Serialize)]
pub struct KubcSolution {
    pub dofs: usize,
    pub elements: usize,
    /// Apparent stiffness (MPa), Voigt `[xx, yy, zz, yz, xz, xy]`, engineering shear.
    pub stiffness_mpa: [[f64; 6]; 6],
    pub iterations: [usize; 6],
    pub relative_residuals: [f64; 6],
    pub seconds: f64,
}

impl PcgOutcome {
    /// Iterations and relative residual of a converged run; the solver's error otherwise.
    pub(crate) fn into_result(self) -> Result<(usize, f64), FeError> {
        match self {
            PcgOutcome::Converged {
                iterations,
                relative_residual,
            } => Ok((iterations, relative_residual)),
            PcgOutcome::Cancelled { iterations, .. } => Err(FeError::Cancelled { iterations }),
            PcgOutcome::NotConverged {
                iterations,
                relative_residual,
            } => Err(FeError::NotConverged {
                iterations,
                relative_residual,
            }),
            PcgOutcome::Breakdown { iterations } => Err(FeError::Breakdown { iterations }),
        }
    }
}

/// Checks the inputs of a voxel FE problem and builds its model: the load-bearing bone voxels
/// under `bc` with a positive modulus scale (elements of zero scale are dropped). Returns the
/// model and the number of bone voxels dropped as not load-bearing.
pub(crate) fn checked_model(
    mask: &BoneMask,
    modulus_scale: Option<&[f32]>,
    material: &Material,
    bc: BoundaryCondition,
    params: &SolverParams,
) -> Result<(VoxelModel, usize), FeError> {
    material.validate().map_err(FeError::InvalidParameter)?;
    let grid = mask.grid;
    if grid
        .voxel_size_mm
        .iter()
        .any(|&h| !(h.is_finite() && h > 0.0))
    {
        return Err(FeError::InvalidParameter(format!(
            "voxel size must be positive and finite, got {:?} mm",
            grid.voxel_size_mm
        )));
    }
    if let Some(s) = modulus_scale
        && (s.len() != mask.voxels.len() || s.iter().any(|v| !(v.is_finite() && *v >= 0.0)))
    {
        return Err(FeError::InvalidParameter(
            "modulus scale must have one finite, non-negative value per voxel".into(),
        ));
    }
    if !(params.tolerance.is_finite() && params.tolerance > 0.0) {
        return Err(FeError::InvalidParameter(format!(
            "tolerance must be positive, got {}",
            params.tolerance
        )));
    }
    if mask.count() == 0 {
        return Err(FeError::EmptyMask);
    }
    let (kept, removed) = load_bearing_voxels(grid.dims, &mask.voxels, bc);
    let kept: Vec<bool> = match modulus_scale {
        Some(s) => kept.iter().zip(s).map(|(&k, &v)| k && v > 0.0).collect(),
        None => kept,
    };
    if !kept.iter().any(|&k| k) {
        return Err(FeError::NoLoadPath);
    }
    let model = VoxelModel::new(grid.dims, grid.voxel_size_mm, &kept, modulus_scale);
    Ok((model, removed))
}

/// A constrained problem with its preconditioner, reusable for several right-hand sides.
struct Problem {
    mg: Option<Multigrid>,
    op_jacobi: Option<(StiffnessOperator, Vec<bool>, Vec<f64>)>,
    removed: usize,
}

impl Problem {
    fn new(
        mask: &BoneMask,
        modulus_scale: Option<&[f32]>,
        material: &Material,
        bc: BoundaryCondition,
        params: &SolverParams,
    ) -> Result<Self, FeError> {
        let (model, removed) = checked_model(mask, modulus_scale, material, bc, params)?;
        let spec = ConstraintSpec::for_axial_or_kubc(bc, &model);
        let fixed = spec.fixed_dofs(&model);
        let op = StiffnessOperator::new(model, material);
        Ok(match params.preconditioner {
            Preconditioner::Multigrid(mp) => Self {
                mg: Some(Multigrid::new(op, fixed, &spec, material, mp)),
                op_jacobi: None,
                removed,
            },
            Preconditioner::Jacobi => {
                let inv: Vec<f64> = op
                    .diagonal()
                    .iter()
                    .zip(&fixed)
                    .map(|(&d, &f)| if f { 0.0 } else { 1.0 / d })
                    .collect();
                Self {
                    mg: None,
                    op_jacobi: Some((op, fixed, inv)),
                    removed,
                }
            }
        })
    }

    fn op(&self) -> &StiffnessOperator {
        match (&self.mg, &self.op_jacobi) {
            (Some(mg), _) => mg.fine_operator(),
            (None, Some((op, _, _))) => op,
            _ => unreachable!("a problem has one preconditioner"),
        }
    }

    fn fixed(&self) -> &[bool] {
        match (&self.mg, &self.op_jacobi) {
            (Some(mg), _) => mg.fine_fixed(),
            (None, Some((_, f, _))) => f,
            _ => unreachable!("a problem has one preconditioner"),
        }
    }

    fn levels(&self) -> usize {
        self.mg.as_ref().map_or(1, |m| m.level_count())
    }

    fn memory_bytes(&self) -> usize {
        let op = self.op();
        let m = &op.model;
        let n = op.dof_count();
        let model_bytes = m.node_of_grid.len() * 4
            + m.grid_of_node.len() * 8
            + m.elements.len() * (32 + 8)
            + m.layer_start.len() * 8;
        // The CG vectors (x, b, r, z, p, q) in f64, plus the preconditioner: the hierarchy
        // (its vectors, constraint flags, coarse models and coarse factor) or, for Jacobi, the
        // inverse diagonal and the flags.
        let pcg_bytes = n * 6 * 8;
        model_bytes + pcg_bytes + self.mg.as_ref().map_or(n * (8 + 1), |mg| mg.memory_bytes())
    }

    /// Solves K u = 0 on the free DOFs with `prescribed` values on the constrained ones.
    /// Returns (u, iterations, relative residual).
    fn solve(
        &mut self,
        prescribed: &[f64],
        params: &SolverParams,
        control: &SolveControl,
    ) -> Result<(Vec<f64>, usize, f64), FeError> {
        match (&mut self.mg, &self.op_jacobi) {
            (Some(mg), _) => {
                let fixed = mg.fine_fixed().to_vec();
                let mg_cell = std::cell::RefCell::new(mg);
                solve_with_prescribed(
                    &|v, y| mg_cell.borrow().apply_fine(v, y),
                    &mut |r, z| mg_cell.borrow_mut().precondition(r, z),
                    prescribed,
                    &fixed,
                    params,
                    control,
                )
            }
            (None, Some((op, fixed, inv))) => solve_with_prescribed(
                &|v, y| {
                    op.apply(v, y);
                    mask(y, fixed);
                },
                &mut jacobi(inv),
                prescribed,
                fixed,
                params,
                control,
            ),
            _ => unreachable!("a problem has one preconditioner"),
        }
    }
}

/// Solves K u = 0 on the free DOFs (`fixed` false) with `prescribed` values on the constrained
/// ones, by preconditioned CG from `control`'s warm start: `apply` is K with the constrained
/// rows zeroed, `precondition` any symmetric positive definite M⁻¹ that keeps them zero.
/// Returns (u, iterations, relative residual).
fn solve_with_prescribed(
    apply: &dyn Fn(&[f64], &mut [f64]),
    precondition: &mut dyn FnMut(&[f64], &mut [f64]),
    prescribed: &[f64],
    fixed: &[bool],
    params: &SolverParams,
    control: &SolveControl,
) -> Result<(Vec<f64>, usize, f64), FeError> {
    let n = prescribed.len();
    // b = −K u_c on the free DOFs.
    let mut b = vec![0.0f64; n];
    apply(prescribed, &mut b);
    b.par_iter_mut().for_each(|v| *v = -*v);
    let mut x = vec![0.0; n];
    if let Some(w) = control.warm_start.filter(|w| w.len() == n) {
        x.copy_from_slice(w);
        mask(&mut x, fixed);
    }
    let mut report = |p: SolverProgress| {
        if let Some(f) = control.progress {
            f(&p)
        }
    };
    let (iterations, rel) = pcg(
        apply,
        precondition,
        &b,
        &mut x,
        params.tolerance,
        params.max_iterations,
        control.cancel,
        &mut report,
    )
    .into_result()?;
    x.par_iter_mut()
        .zip(prescribed)
        .zip(fixed)
        .for_each(|((x, &p), &f)| {
            if f {
                *x = p
            }
        });
    Ok((x, iterations, rel))
}

/// The Jacobi preconditioner z = D⁻¹ r with the inverse diagonal `inv` (0 on constrained
/// DOFs).
fn jacobi(inv: &[f64]) -> impl FnMut(&[f64], &mut [f64]) + '_ {
    move |r, z| {
        z.par_iter_mut()
            .zip(r)
            .zip(inv)
            .for_each(|((z, &r), &d)| *z = d * r)
    }
}

/// Element strains, stresses and SED from nodal displacements.
fn element_fields(op: &StiffnessOperator, material: &Material, u: &[f64]) -> ElementFields {
    let model = &op.model;
    let h = model.voxel_size_mm;
    let volume = h[0] * h[1] * h[2];
    let b = element::strain_displacement([0.0; 3], h);
    let d = material.elasticity_matrix();
    let results: Vec<([f32; 6], [f32; 6], f32)> = (0..model.element_count())
        .into_par_iter()
        .map(|e| {
            let ue = op.gather(e, u);
            let ke_ue = op.element_product(e, &ue);
            let energy = 0.5 * ue.iter().zip(&ke_ue).map(|(a, b)| a * b).sum::<f64>();
            let eps = element::mean_strain(&b, &ue);
            let s = model.scale(e);
            let mut sig = [0f32; 6];
            for i in 0..6 {
                sig[i] = (s * (0..6).map(|j| d[i][j] * eps[j]).sum::<f64>()) as f32;
            }
            (eps.map(|v| v as f32), sig, (energy / volume) as f32)
        })
        .collect();
    let mut f = ElementFields {
        voxel: model.element_voxel.clone(),
        ..Default::default()
    };
    for (eps, sig, sed) in results {
        f.strain.push(eps);
        f.stress_mpa.push(sig);
        f.sed_mpa.push(sed);
    }
    f
}

/// Solves an axial compression/tension test of a segmented structure (design §2).
pub fn solve_axial(
    mask: &BoneMask,
    material: &Material,
    load: &AxialLoad,
    params: &SolverParams,
    control: &SolveControl,
) -> Result<AxialSolution, FeError> {
    solve_axial_heterogeneous(mask, None, material, load, params, control)
}

/// As [`solve_axial`], with a per-voxel modulus scale (grid-indexed; e.g. from grey values).
pub fn solve_axial_heterogeneous(
    mask: &BoneMask,
    modulus_scale: Option<&[f32]>,
    material: &Material,
    load: &AxialLoad,
    params: &SolverParams,
    control: &SolveControl,
) -> Result<AxialSolution, FeError> {
    if load.bc == BoundaryCondition::Kubc {
        return Err(FeError::InvalidParameter(
            "kubc is not an axial condition: use solve_kubc".into(),
        ));
    }
    if !(load.strain.is_finite() && load.strain != 0.0) {
        return Err(FeError::InvalidParameter(format!(
            "strain must be finite and non-zero, got {}",
            load.strain
        )));
    }
    let t0 = Instant::now();
    let mut problem = Problem::new(mask, modulus_scale, material, load.bc, params)?;
    let setup_seconds = t0.elapsed().as_secs_f64();
    let grid = mask.grid;
    let dims = grid.dims;
    let h = grid.voxel_size_mm;
    let height_mm = dims.nz as f64 * h[2];
    let top_uz = load.strain * height_mm;
    let op = problem.op();
    let model = &op.model;
    let mut prescribed = vec![0.0; op.dof_count()];
    let top_nodes: Vec<usize> = (0..model.node_count())
        .filter(|&n| model.node_coords(n)[2] == dims.nz)
        .collect();
    for &n in &top_nodes {
        prescribed[3 * n + 2] = top_uz;
    }
    let t1 = Instant::now();
    let (u, iterations, relative_residual) = problem.solve(&prescribed, params, control)?;
    let solve_seconds = t1.elapsed().as_secs_f64();
    let op = problem.op();
    let mut f = vec![0.0f64; u.len()];
    op.apply(&u, &mut f);
    let reaction_force_n: f64 = top_nodes.iter().map(|&n| f[3 * n + 2]).sum();
    let area_mm2 = dims.nx as f64 * h[0] * dims.ny as f64 * h[1];
    let e_app_mpa = reaction_force_n / (area_mm2 * load.strain);
    let fields = element_fields(op, material, &u);
    // ½ uᵀ K u in f64 (the per-element SED fields are f32).
    let strain_energy_mj = 0.5 * dot(&u, &f);
    let mut sed_grid = vec![0.0f32; dims.len()];
    for (&v, &s) in fields.voxel.iter().zip(&fields.sed_mpa) {
        sed_grid[v] = s;
    }
    Ok(AxialSolution {
        bc: load.bc,
        dofs: op.dof_count(),
        elements: op.model.element_count(),
        removed_elements: problem.removed,
        iterations,
        relative_residual,
        reaction_force_n,
        e_app_mpa,
        strain_energy_mj,
        external_work_mj: 0.5 * reaction_force_n * top_uz,
        setup_seconds,
        solve_seconds,
        seconds: t0.elapsed().as_secs_f64(),
        levels: problem.levels(),
        level_dofs: problem
            .mg
            .as_ref()
            .map_or_else(|| vec![problem.op().dof_count()], |m| m.level_dofs()),
        solver_memory_bytes: problem.memory_bytes(),
        displacements_mm: u,
        sed_mpa: sed_grid,
        element_fields: fields,
    })
}

/// Apparent 6×6 stiffness under kinematic uniform boundary conditions: six solves with
/// u = ε·x on the box surface (unit strains of 1e-3), each column the volume-average stress
/// over the box (voids count with zero stress) divided by the strain.
pub fn solve_kubc(
    mask: &BoneMask,
    material: &Material,
    params: &SolverParams,
    control: &SolveControl,
) -> Result<KubcSolution, FeError> {
    let t0 = Instant::now();
    let mut problem = Problem::new(mask, None, material, BoundaryCondition::Kubc, params)?;
    let grid = mask.grid;
    let h = grid.voxel_size_mm;
    let box_volume = grid.extent_mm().iter().product::<f64>();
    let unit = 1e-3;
    let mut stiffness = [[0.0; 6]; 6];
    let mut iterations = [0; 6];
    let mut relative_residuals = [0.0; 6];
    for case in 0..6 {
        // Symmetric displacement gradient of the Voigt unit strain.
        let mut g = [[0.0; 3]; 3];
        match case {
            0..=2 => g[case][case] = unit,
            3 => (g[1][2], g[2][1]) = (unit / 2.0, unit / 2.0),
            4 => (g[0][2], g[2][0]) = (unit / 2.0, unit / 2.0),
            _ => (g[0][1], g[1][0]) = (unit / 2.0, unit / 2.0),
        }
        let op = problem.op();
        let model = &op.model;
        let fixed = problem.fixed();
        let mut prescribed = vec![0.0; op.dof_count()];
        for n in 0..model.node_count() {
            let c = model.node_coords(n);
            let p = [c[0] as f64 * h[0], c[1] as f64 * h[1], c[2] as f64 * h[2]];
            for i in 0..3 {
                if fixed[3 * n + i] {
                    prescribed[3 * n + i] = (0..3).map(|j| g[i][j] * p[j]).sum();
                }
            }
        }
        let (u, its, rel) = problem.solve(&prescribed, params, control)?;
        iterations[case] = its;
        relative_residuals[case] = rel;
        let op = problem.op();
        let b = element::strain_displacement([0.0; 3], h);
        let strain_sum = (0..op.model.element_count())
            .into_par_iter()
            .map(|e| {
                let eps = element::mean_strain(&b, &op.gather(e, &u));
                eps.map(|v| v * op.model.scale(e))
            })
            .reduce(|| [0.0; 6], |a, b| std::array::from_fn(|i| a[i] + b[i]));
        let d = material.elasticity_matrix();
        let v = grid.voxel_volume_mm3();
        for i in 0..6 {
            let stress_sum: f64 = (0..6).map(|j| d[i][j] * strain_sum[j]).sum();
            stiffness[i][case] = stress_sum * v / box_volume / unit;
        }
    }
    let op = problem.op();
    Ok(KubcSolution {
        dofs: op.dof_count(),
        elements: op.model.element_count(),
        stiffness_mpa: stiffness,
        iterations,
        relative_residuals,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod verification;
