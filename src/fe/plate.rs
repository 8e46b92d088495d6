//! Force-controlled loading through rigid endplates: compression and flexion of a bone (for
//! example a vertebral body) between two plates.
//!
//! The bottom face (z = 0) is fully fixed. The top face (z = n_z) moves as a rigid plate in z
//! with two generalised coordinates, a translation `w` and a tilt `θ` about the x axis through
//! the centroid of the top-face nodes:
//!
//! ```text
//! u_z(y) = w − θ · (y − y_c)        (θ > 0 lowers the anterior, +y, side: anterior flexion)
//! ```
//!
//! u_x and u_y of the top face are free, as in `axial-clamped`. The conjugate generalised
//! forces are `P_w = Σ f_z` and `P_θ = −Σ f_z (y − y_c)` over the top-face nodes, where f is
//! the nodal force K u. Two unit solves give the 2×2 plate stiffness S (P = S q); a load case
//! with compressive force F and flexion moment M (P = (−F, M)) is then the superposition
//! q = S⁻¹ P of the two unit fields, so any number of load cases costs two solves. A pure
//! compression of an asymmetric body therefore also tilts the plate, and a pure flexion
//! moment carries no net axial force.

use std::time::Instant;

use super::*;

/// One force-controlled load case on the top plate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlateLoad {
    /// Compressive axial force (N, ≥ 0 compresses).
    pub force_n: f64,
    /// Flexion moment about the x axis (N·mm; > 0 compresses the +y side).
    pub moment_nmm: f64,
}

/// The response to one [`PlateLoad`].
#[derive(Clone, Debug)]
pub struct PlateLoadResponse {
    pub load: PlateLoad,
    /// Plate translation w (mm; negative in compression).
    pub top_uz_mm: f64,
    /// Plate tilt θ (rad).
    pub tilt_rad: f64,
    /// SED per voxel (MPa), grid-indexed, 0 where there is no element.
    pub sed_mpa: Vec<f32>,
    /// ½ uᵀ K u (mJ); equals ½ Pᵀ q.
    pub strain_energy_mj: f64,
}

/// Result of [`solve_plate_loads`].
#[derive(Clone, Debug)]
pub struct PlateSolution {
    pub dofs: usize,
    pub elements: usize,
    /// Bone voxels dropped because they cannot carry load.
    pub removed_elements: usize,
    /// The plate stiffness S, P = S q with q = (w mm, θ rad): N/mm, N, N·mm/rad.
    pub plate_stiffness: [[f64; 2]; 2],
    /// CG iterations of the two unit solves.
    pub iterations: [usize; 2],
    pub responses: Vec<PlateLoadResponse>,
    /// Displacements of the two unit motions (w = −1e-3·height; θ = 1e-3 rad), for warm
    /// starting the next solve on a changed modulus field.
    pub unit_displacements_mm: [Vec<f64>; 2],
    pub seconds: f64,
}

/// Solves the load cases `loads` on a body between a fixed bottom plate and a rigid top plate
/// (see the module documentation). `modulus_scale` multiplies `material`'s E per voxel
/// (grid-indexed); `warm_start` takes [`PlateSolution::unit_displacements_mm`] of a previous
/// solve on the same structure.
pub fn solve_plate_loads(
    mask: &BoneMask,
    modulus_scale: Option<&[f32]>,
    material: &Material,
    loads: &[PlateLoad],
    params: &SolverParams,
    control: &SolveControl,
    warm_start: Option<&[Vec<f64>; 2]>,
) -> Result<PlateSolution, FeError> {
    for l in loads {
        if !(l.force_n.is_finite() && l.moment_nmm.is_finite()) {
            return Err(FeError::InvalidParameter(format!(
                "plate load must be finite, got force {} N, moment {} N·mm",
                l.force_n, l.moment_nmm
            )));
        }
    }
    let t0 = Instant::now();
    let mut problem = Problem::new(
        mask,
        modulus_scale,
        material,
        BoundaryCondition::AxialClamped,
        params,
    )?;
    let grid = mask.grid;
    let dims = grid.dims;
    let h = grid.voxel_size_mm;
    let (top_nodes, lever, n) = {
        let op = problem.op();
        let model = &op.model;
        let top_nodes: Vec<usize> = (0..model.node_count())
            .filter(|&n| model.node_coords(n)[2] == dims.nz)
            .collect();
        let y_of = |n: usize| model.node_coords(n)[1] as f64 * h[1];
        let y_c = top_nodes.iter().map(|&n| y_of(n)).sum::<f64>() / top_nodes.len().max(1) as f64;
        let lever: Vec<f64> = top_nodes.iter().map(|&n| y_of(n) - y_c).collect();
        (top_nodes, lever, op.dof_count())
    };
    if top_nodes.len() < 2 {
        return Err(FeError::NoLoadPath);
    }
    if lever.iter().all(|&l| l.abs() < 1e-12) {
        return Err(FeError::InvalidParameter(
            "the top face has no extent in y, so it cannot be tilted".into(),
        ));
    }
    let unit_w = -1e-3 * dims.nz as f64 * h[2];
    let unit_theta = 1e-3;
    let unit_q = [[unit_w, 0.0], [0.0, unit_theta]];
    let mut unit_u: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut stiffness = [[0.0f64; 2]; 2];
    let mut iterations = [0usize; 2];
    for (k, q) in unit_q.iter().enumerate() {
        let mut prescribed = vec![0.0; n];
        for (&node, &l) in top_nodes.iter().zip(&lever) {
            prescribed[3 * node + 2] = q[0] - q[1] * l;
        }
        let control_k = SolveControl {
            warm_start: warm_start.map(|w| w[k].as_slice()),
            ..*control
        };
        let (u, its, _) = problem.solve(&prescribed, params, &control_k)?;
        let op = problem.op();
        let mut f = vec![0.0f64; n];
        op.apply(&u, &mut f);
        let p_w: f64 = top_nodes.iter().map(|&node| f[3 * node + 2]).sum();
        let p_theta: f64 = -top_nodes
            .iter()
            .zip(&lever)
            .map(|(&node, &l)| f[3 * node + 2] * l)
            .sum::<f64>();
        // Column k of S: generalised forces per unit of coordinate k.
        let qk = q[k];
        stiffness[0][k] = p_w / qk;
        stiffness[1][k] = p_theta / qk;
        iterations[k] = its;
        unit_u[k] = u;
    }
    let det = stiffness[0][0] * stiffness[1][1] - stiffness[0][1] * stiffness[1][0];
    if !(det.is_finite() && det > 0.0) {
        return Err(FeError::InvalidParameter(format!(
            "plate stiffness is singular (det {det:.3e}); the body cannot resist both compression and flexion"
        )));
    }
    let op = problem.op();
    let mut responses = Vec::with_capacity(loads.len());
    for load in loads {
        let p = [-load.force_n, load.moment_nmm];
        let w = (stiffness[1][1] * p[0] - stiffness[0][1] * p[1]) / det;
        let theta = (stiffness[0][0] * p[1] - stiffness[1][0] * p[0]) / det;
        let a = w / unit_w;
        let b = theta / unit_theta;
        let u: Vec<f64> = unit_u[0]
            .par_iter()
            .zip(&unit_u[1])
            .map(|(&u0, &u1)| a * u0 + b * u1)
            .collect();
        let fields = element_fields(op, material, &u);
        let mut sed = vec![0.0f32; dims.len()];
        for (&v, &s) in fields.voxel.iter().zip(&fields.sed_mpa) {
            sed[v] = s;
        }
        let mut f = vec![0.0f64; n];
        op.apply(&u, &mut f);
        responses.push(PlateLoadResponse {
            load: *load,
            top_uz_mm: w,
            tilt_rad: theta,
            sed_mpa: sed,
            strain_energy_mj: 0.5 * dot(&u, &f),
        });
    }
    Ok(PlateSolution {
        dofs: n,
        elements: op.model.element_count(),
        removed_elements: problem.removed,
        plate_stiffness: stiffness,
        iterations,
        responses,
        unit_displacements_mm: unit_u,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Dims, Grid};

    fn column(nx: usize, ny: usize, nz: usize, h: f64) -> BoneMask {
        BoneMask::from_fn(Grid::isotropic(Dims::new(nx, ny, nz), h), |_, _, _| true)
    }

    fn params() -> SolverParams {
        SolverParams {
            tolerance: 1e-10,
            ..Default::default()
        }
    }

    /// With ν = 0 a clamped prism under a rigid plate is in exact uniaxial strain:
    /// F = E A w / L, no tilt, and the strain energy is ½ F w.
    #[test]
    fn plate_compression_of_a_prism_with_zero_poisson_matches_e_a_over_l() {
        let (nx, ny, nz, h) = (6, 8, 10, 0.5);
        let e = 1000.0;
        let material = Material {
            young_modulus_mpa: e,
            poisson_ratio: 0.0,
        };
        let force = 120.0;
        let sol = solve_plate_loads(
            &column(nx, ny, nz, h),
            None,
            &material,
            &[PlateLoad {
                force_n: force,
                moment_nmm: 0.0,
            }],
            &params(),
            &SolveControl::default(),
            None,
        )
        .unwrap();
        let area = (nx as f64 * h) * (ny as f64 * h);
        let length = nz as f64 * h;
        let k_axial = e * area / length;
        assert!((sol.plate_stiffness[0][0] / k_axial - 1.0).abs() < 1e-8);
        assert!(sol.plate_stiffness[0][1].abs() < 1e-6 * k_axial);
        let r = &sol.responses[0];
        assert!((r.top_uz_mm + force / k_axial).abs() < 1e-8 * force / k_axial);
        assert!(r.tilt_rad.abs() < 1e-10);
        let work = 0.5 * force * (-r.top_uz_mm);
        assert!((r.strain_energy_mj / work - 1.0).abs() < 1e-8);
        // Uniform SED σ²/(2E).
        let sigma = force / area;
        let sed = sigma * sigma / (2.0 * e);
        assert!(
            r.sed_mpa
                .iter()
                .all(|&s| ((s as f64) / sed - 1.0).abs() < 1e-5)
        );
    }

    /// Pure bending of a slender prism (ν = 0): the tilt approaches the Euler–Bernoulli
    /// θ = M L / (E I), I = b d³ / 12, as the mesh is refined across the depth (trilinear
    /// hexahedra are stiff in bending); the energy is always ½ M θ.
    #[test]
    fn plate_flexion_of_a_slender_prism_converges_to_euler_bernoulli() {
        let e = 1000.0;
        let material = Material {
            young_modulus_mpa: e,
            poisson_ratio: 0.0,
        };
        let moment = 50.0;
        let mut errors = Vec::new();
        for refine in [1usize, 2] {
            let (nx, ny, nz) = (2 * refine, 4 * refine, 16 * refine);
            let h = 1.0 / refine as f64;
            let sol = solve_plate_loads(
                &column(nx, ny, nz, h),
                None,
                &material,
                &[PlateLoad {
                    force_n: 0.0,
                    moment_nmm: moment,
                }],
                &params(),
                &SolveControl::default(),
                None,
            )
            .unwrap();
            let (b, d, l) = (2.0, 4.0, 16.0);
            let theta_eb = moment * l / (e * b * d * d * d / 12.0);
            let r = &sol.responses[0];
            assert!(r.top_uz_mm.abs() < 1e-9, "no net axial motion by symmetry");
            assert!((r.strain_energy_mj / (0.5 * moment * r.tilt_rad) - 1.0).abs() < 1e-8);
            errors.push((r.tilt_rad / theta_eb - 1.0).abs());
        }
        assert!(errors[1] < 0.5 * errors[0], "errors {errors:?}");
        assert!(errors[1] < 0.05, "errors {errors:?}");
    }
}
