//! Micro-FE benchmark on the real micro-CT sample (issue 2 §4):
//! 200³ at 19.5 µm, downsampled ×2 (39 µm), Gaussian σ = 1 voxel, thresholded at BV/TV 0.25,
//! largest component; `axial-clamped`, ε = −1 %, tolerance 1e-8. Reports setup and solve
//! time, iterations, memory per DOF, and the matrix-free operator throughput.
//!
//! Run: `cargo bench --bench micro_fe` (finds the data at `$OSTEOLAB_DATA` or `../shared/data`).
//! The side-by-side comparison with ParOSol is `benches/fe_vs_parosol.sh`.

use std::time::Instant;

use osteolab::fe::model::VoxelModel;
use osteolab::fe::operator::StiffnessOperator;
use osteolab::fe::{
    AxialLoad, BoundaryCondition, Material, Preconditioner, SolveControl, SolverParams, solve_axial,
};
use osteolab::volume::load_volume;
use osteolab::volume::segment::{SegmentParams, Threshold, downsample_volume, segment};

fn main() {
    let Some(path) = osteolab::sample_data::microct_sample() else {
        return;
    };
    let vol = load_volume(&path).expect("read micro-CT");
    let vol = downsample_volume(&vol, 2).expect("downsample");
    let mask = segment(
        &vol,
        &SegmentParams {
            sigma_voxels: 1.0,
            threshold: Threshold::BvTv(0.25),
            keep_largest_component: true,
        },
    )
    .expect("segment");
    println!(
        "volume {:?} at {:.1} µm, BV/TV {:.4}, {} bone voxels",
        mask.dims().as_array(),
        mask.grid.voxel_size_mm[0] * 1000.0,
        mask.bv_tv(),
        mask.count()
    );
    let material = Material::default();

    // Operator throughput.
    let model = VoxelModel::new(mask.grid.dims, mask.grid.voxel_size_mm, &mask.voxels, None);
    let op = StiffnessOperator::new(model, &material);
    let n = op.dof_count();
    let x: Vec<f64> = (0..n).map(|i| (i % 7) as f64 * 1e-3).collect();
    let mut y = vec![0.0; n];
    op.apply(&x, &mut y);
    let reps = 50;
    let t0 = Instant::now();
    for _ in 0..reps {
        op.apply(&x, &mut y);
    }
    let dt = t0.elapsed().as_secs_f64() / reps as f64;
    let elements = op.model.element_count();
    println!(
        "operator: {} DOFs, {} elements, {:.2} ms per product, {:.1} M element applications/s ({} threads)",
        n,
        elements,
        dt * 1e3,
        elements as f64 / dt / 1e6,
        rayon::current_num_threads()
    );
    drop(op);

    for (name, pre) in [
        ("multigrid", SolverParams::default().preconditioner),
        ("jacobi", Preconditioner::Jacobi),
    ] {
        let params = SolverParams {
            tolerance: 1e-8,
            preconditioner: pre,
            ..Default::default()
        };
        let sol = solve_axial(
            &mask,
            &material,
            &AxialLoad {
                bc: BoundaryCondition::AxialClamped,
                strain: -0.01,
            },
            &params,
            &SolveControl::default(),
        )
        .expect("solve");
        println!(
            "{name:9}: {} DOFs, {} levels, {} iterations, residual {:.2e}, setup {:.2} s, solve {:.2} s, total {:.2} s, F = {:.6} N, E_app = {:.2} MPa, solver memory {:.1} B/DOF",
            sol.dofs,
            sol.levels,
            sol.iterations,
            sol.relative_residual,
            sol.setup_seconds,
            sol.solve_seconds,
            sol.seconds,
            sol.reaction_force_n,
            sol.e_app_mpa,
            sol.solver_memory_bytes as f64 / sol.dofs as f64
        );
    }
}
