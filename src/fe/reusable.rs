//! An axial problem on a fixed structure whose element moduli change between solves (the
//! secant stiffness of a damage model), with a preconditioner that is kept across solves.
//!
//! [`crate::fe::solve_axial_heterogeneous`] builds the model, the constraints and the whole
//! multigrid hierarchy (coarse models, spectrum estimates, the coarse Cholesky factor) for
//! every solve. Here they are built once: [`ReusableAxialProblem::update_scale`] changes the
//! element moduli of the operator that conjugate gradients solve with, while the multigrid
//! hierarchy keeps the moduli it was built for until
//! [`ReusableAxialProblem::rebuild_preconditioner`] is called. Preconditioned CG converges to
//! the solution of the *current* operator with any fixed symmetric positive definite
//! preconditioner (Saad 2003, *Iterative Methods for Sparse Linear Systems*, §9.2); a
//! preconditioner built for other moduli only costs iterations. The caller decides when a
//! rebuild pays off, e.g. from [`ReusableAxialProblem::scale_drift`] or the iteration count.

use std::time::Instant;

use rayon::prelude::*;

use super::bc::ConstraintSpec;
use super::multigrid::{Multigrid, dot, mask};
use super::operator::StiffnessOperator;
use super::{
    AxialLoad, AxialSolution, BoundaryCondition, FeError, Material, Preconditioner, SolveControl,
    SolverParams, element_fields, jacobi, solve_with_prescribed,
};
use crate::volume::BoneMask;

/// The preconditioner of a reusable problem, built for `scale`.
enum Kept {
    Multigrid(Multigrid),
    /// Inverse diagonal, 0 on constrained DOFs.
    Jacobi(Vec<f64>),
}

/// An axial load case on one structure, solved repeatedly with changing element moduli.
pub struct ReusableAxialProblem {
    mask: BoneMask,
    material: Material,
    bc: BoundaryCondition,
    params: SolverParams,
    spec: ConstraintSpec,
    /// The operator with the current element moduli (element order of its model).
    op: StiffnessOperator,
    fixed: Vec<bool>,
    top_nodes: Vec<usize>,
    /// Element moduli the preconditioner was built for.
    preconditioner_scale: Vec<f32>,
    preconditioner: Kept,
    removed: usize,
    builds: usize,
    last_setup_seconds: f64,
}

impl ReusableAxialProblem {
    /// Builds the model of the load-bearing voxels of `mask` under `bc` with the grid-indexed
    /// `modulus_scale` (as in [`crate::fe::solve_axial_heterogeneous`]; voxels with scale 0
    /// are left out) and its preconditioner.
    pub fn new(
        mask: &BoneMask,
        modulus_scale: Option<&[f32]>,
        material: &Material,
        bc: BoundaryCondition,
        params: &SolverParams,
    ) -> Result<Self, FeError> {
        let t0 = Instant::now();
        material.validate().map_err(FeError::InvalidParameter)?;
        if bc == BoundaryCondition::Kubc {
            return Err(FeError::InvalidParameter(
                "kubc is not an axial condition: use solve_kubc".into(),
            ));
        }
        let (model, removed) = super::checked_model(mask, modulus_scale, material, bc, params)?;
        let grid = mask.grid;
        let spec = ConstraintSpec::for_axial_or_kubc(bc, &model);
        let fixed = spec.fixed_dofs(&model);
        let nz = grid.dims.nz;
        let top_nodes: Vec<usize> = (0..model.node_count())
            .filter(|&n| model.node_coords(n)[2] == nz)
            .collect();
        let preconditioner_scale: Vec<f32> = (0..model.element_count())
            .map(|e| model.scale(e) as f32)
            .collect();
        let op = StiffnessOperator::new(model, material);
        let preconditioner = build_preconditioner(&op, &fixed, &spec, material, params);
        Ok(Self {
            mask: mask.clone(),
            material: *material,
            bc,
            params: *params,
            spec,
            op,
            fixed,
            top_nodes,
            preconditioner_scale,
            preconditioner,
            removed,
            builds: 1,
            last_setup_seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Linear voxel index of each element of the model (its element order).
    pub fn element_voxel(&self) -> &[usize] {
        &self.op.model.element_voxel
    }

    /// Bone voxels left out because they cannot carry load.
    pub fn removed_elements(&self) -> usize {
        self.removed
    }

    /// How many times the preconditioner has been built (1 after [`Self::new`]).
    pub fn preconditioner_builds(&self) -> usize {
        self.builds
    }

    /// Sets the element moduli of the operator (grid-indexed, like the scale given to
    /// [`Self::new`]). Every element of the model needs a positive, finite scale: an element
    /// cannot be removed from a reusable problem. The preconditioner is left as it is.
    pub fn update_scale(&mut self, modulus_scale: &[f32]) -> Result<(), FeError> {
        if modulus_scale.len() != self.mask.voxels.len() {
            return Err(FeError::InvalidParameter(format!(
                "modulus scale has {} values for {} voxels",
                modulus_scale.len(),
                self.mask.voxels.len()
            )));
        }
        let model = &mut self.op.model;
        let scale: Vec<f32> = model
            .element_voxel
            .iter()
            .map(|&v| modulus_scale[v])
            .collect();
        if let Some(e) = scale.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(FeError::InvalidParameter(format!(
                "element at voxel {} needs a positive, finite modulus scale, got {}",
                model.element_voxel[e], scale[e]
            )));
        }
        model.modulus_scale = Some(scale);
        Ok(())
    }

    /// The largest factor by which an element modulus differs between the operator and the
    /// preconditioner, as |ln(E / E_preconditioner)| (0 right after a rebuild).
    pub fn scale_drift(&self) -> f64 {
        let m = &self.op.model;
        (0..m.element_count())
            .into_par_iter()
            .map(|e| {
                (m.scale(e) / self.preconditioner_scale[e] as f64)
                    .ln()
                    .abs()
            })
            .reduce(|| 0.0, f64::max)
    }

    /// Builds the preconditioner again for the current element moduli.
    pub fn rebuild_preconditioner(&mut self) {
        let t0 = Instant::now();
        self.preconditioner = build_preconditioner(
            &self.op,
            &self.fixed,
            &self.spec,
            &self.material,
            &self.params,
        );
        let m = &self.op.model;
        self.preconditioner_scale = (0..m.element_count()).map(|e| m.scale(e) as f32).collect();
        self.builds += 1;
        self.last_setup_seconds = t0.elapsed().as_secs_f64();
    }

    /// Solves `load` with the current element moduli; `params` gives the tolerance and the
    /// iteration limit (its preconditioner choice is the one of [`Self::new`]). The result is
    /// that of [`crate::fe::solve_axial_heterogeneous`] for the same moduli, to the solver
    /// tolerance; `setup_seconds` is the time of the latest preconditioner build.
    pub fn solve(
        &mut self,
        load: &AxialLoad,
        params: &SolverParams,
        control: &SolveControl,
    ) -> Result<AxialSolution, FeError> {
        if load.bc != self.bc {
            return Err(FeError::InvalidParameter(format!(
                "the problem was built for {}, not {}",
                self.bc, load.bc
            )));
        }
        if !(load.strain.is_finite() && load.strain != 0.0) {
            return Err(FeError::InvalidParameter(format!(
                "strain must be finite and non-zero, got {}",
                load.strain
            )));
        }
        if !(params.tolerance.is_finite() && params.tolerance > 0.0) {
            return Err(FeError::InvalidParameter(format!(
                "tolerance must be positive, got {}",
                params.tolerance
            )));
        }
        let t0 = Instant::now();
        let grid = self.mask.grid;
        let dims = grid.dims;
        let h = grid.voxel_size_mm;
        let top_uz = load.strain * dims.nz as f64 * h[2];
        let n = self.op.dof_count();
        let mut prescribed = vec![0.0; n];
        for &node in &self.top_nodes {
            prescribed[3 * node + 2] = top_uz;
        }
        let (op, fixed) = (&self.op, &self.fixed);
        let apply = |v: &[f64], y: &mut [f64]| {
            op.apply(v, y);
            mask(y, fixed);
        };
        let (x, iterations, relative_residual) = match &mut self.preconditioner {
            Kept::Multigrid(mg) => solve_with_prescribed(
                &apply,
                &mut |r, z| mg.precondition(r, z),
                &prescribed,
                fixed,
                params,
                control,
            )?,
            Kept::Jacobi(inv) => solve_with_prescribed(
                &apply,
                &mut jacobi(inv),
                &prescribed,
                fixed,
                params,
                control,
            )?,
        };
        let solve_seconds = t0.elapsed().as_secs_f64();
        let mut f = vec![0.0f64; n];
        op.apply(&x, &mut f);
        let reaction_force_n: f64 = self.top_nodes.iter().map(|&nd| f[3 * nd + 2]).sum();
        let area_mm2 = dims.nx as f64 * h[0] * dims.ny as f64 * h[1];
        let fields = element_fields(op, &self.material, &x);
        let strain_energy_mj = 0.5 * dot(&x, &f);
        let mut sed_grid = vec![0.0f32; dims.len()];
        for (&v, &s) in fields.voxel.iter().zip(&fields.sed_mpa) {
            sed_grid[v] = s;
        }
        let (levels, level_dofs, preconditioner_bytes) = match &self.preconditioner {
            Kept::Multigrid(mg) => (mg.level_count(), mg.level_dofs(), mg.memory_bytes()),
            Kept::Jacobi(_) => (1, vec![n], n * 8),
        };
        let m = &op.model;
        let model_bytes = m.node_of_grid.len() * 4
            + m.grid_of_node.len() * 8
            + m.elements.len() * (32 + 8 + 4)
            + m.layer_start.len() * 8;
        Ok(AxialSolution {
            bc: load.bc,
            dofs: n,
            elements: m.element_count(),
            removed_elements: self.removed,
            iterations,
            relative_residual,
            reaction_force_n,
            e_app_mpa: reaction_force_n / (area_mm2 * load.strain),
            strain_energy_mj,
            external_work_mj: 0.5 * reaction_force_n * top_uz,
            setup_seconds: self.last_setup_seconds,
            solve_seconds,
            seconds: t0.elapsed().as_secs_f64(),
            displacements_mm: x,
            sed_mpa: sed_grid,
            element_fields: fields,
            levels,
            level_dofs,
            // The CG vectors (x, b, r, z, p, q), the model and the preconditioner (whose level
            // 0 holds a second copy of the model).
            solver_memory_bytes: n * 6 * 8 + 2 * model_bytes + preconditioner_bytes,
        })
    }
}

/// The preconditioner of `params` for `op` (copied: the hierarchy owns its level-0 operator).
fn build_preconditioner(
    op: &StiffnessOperator,
    fixed: &[bool],
    spec: &ConstraintSpec,
    material: &Material,
    params: &SolverParams,
) -> Kept {
    match params.preconditioner {
        Preconditioner::Multigrid(mp) => Kept::Multigrid(Multigrid::new(
            StiffnessOperator::new(op.model.clone(), material),
            fixed.to_vec(),
            spec,
            material,
            mp,
        )),
        Preconditioner::Jacobi => Kept::Jacobi(
            op.diagonal()
                .iter()
                .zip(fixed)
                .map(|(&d, &f)| if f || d <= 0.0 { 0.0 } else { 1.0 / d })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Dims, Grid};

    /// A porous 12³ structure with solid end slabs (deterministic).
    fn porous() -> BoneMask {
        let mut s = 7u64;
        BoneMask::from_fn(Grid::isotropic(Dims::new(12, 12, 12), 0.05), |_, _, z| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (s >> 11) as f64 / (1u64 << 53) as f64;
            z == 0 || z == 11 || r < 0.7
        })
    }

    fn field(mask: &BoneMask, seed: u64) -> Vec<f32> {
        let mut s = seed;
        mask.voxels
            .iter()
            .map(|&b| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (s >> 11) as f64 / (1u64 << 53) as f64;
                if b { (0.01 + r) as f32 } else { 0.0 }
            })
            .collect()
    }

    /// Problem: a porous 12³ structure with random element moduli (scale 0.01–1.01, E =
    /// 1000 MPa, ν = 0.3) in axial-clamped compression. Goal: after `update_scale` to a second
    /// random field, a solve with the stale multigrid hierarchy, and one after rebuilding it,
    /// give the reaction and strain energy of a fresh `solve_axial_heterogeneous` with the new
    /// field. Tolerance: 1e-7 relative (solver tolerance 1e-10).
    #[test]
    fn a_stale_preconditioner_gives_the_solution_of_the_updated_moduli() {
        let mask = porous();
        let material = Material {
            young_modulus_mpa: 1000.0,
            poisson_ratio: 0.3,
        };
        let params = SolverParams {
            tolerance: 1e-10,
            ..Default::default()
        };
        let load = AxialLoad {
            bc: BoundaryCondition::AxialClamped,
            strain: -1e-3,
        };
        let first = field(&mask, 1);
        let second = field(&mask, 2);
        let mut problem = ReusableAxialProblem::new(
            &mask,
            Some(&first),
            &material,
            BoundaryCondition::AxialClamped,
            &params,
        )
        .unwrap();
        problem.update_scale(&second).unwrap();
        assert!(problem.scale_drift() > 1.0);
        let fresh = super::super::solve_axial_heterogeneous(
            &mask,
            Some(&second),
            &material,
            &load,
            &params,
            &SolveControl::default(),
        )
        .unwrap();
        let stale = problem
            .solve(&load, &params, &SolveControl::default())
            .unwrap();
        problem.rebuild_preconditioner();
        assert_eq!(problem.scale_drift(), 0.0);
        assert_eq!(problem.preconditioner_builds(), 2);
        let rebuilt = problem
            .solve(&load, &params, &SolveControl::default())
            .unwrap();
        for s in [&stale, &rebuilt] {
            let rel = |a: f64, b: f64| ((a - b) / b).abs();
            assert!(rel(s.reaction_force_n, fresh.reaction_force_n) < 1e-7);
            assert!(rel(s.strain_energy_mj, fresh.strain_energy_mj) < 1e-7);
            assert_eq!(s.elements, fresh.elements);
        }
        assert_eq!(rebuilt.iterations, fresh.iterations);
    }

    #[test]
    fn updating_an_element_to_zero_modulus_is_rejected() {
        let mask = porous();
        let material = Material {
            young_modulus_mpa: 1000.0,
            poisson_ratio: 0.3,
        };
        let mut problem = ReusableAxialProblem::new(
            &mask,
            None,
            &material,
            BoundaryCondition::AxialClamped,
            &SolverParams::default(),
        )
        .unwrap();
        let mut scale = vec![1.0f32; mask.voxels.len()];
        let v = problem.element_voxel()[3];
        scale[v] = 0.0;
        assert!(matches!(
            problem.update_scale(&scale),
            Err(FeError::InvalidParameter(_))
        ));
        assert!(matches!(
            problem.update_scale(&scale[1..]),
            Err(FeError::InvalidParameter(_))
        ));
    }
}
