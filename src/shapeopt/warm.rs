//! Warm starts across surface moves: the previous displacement field, mapped onto the nodes of
//! the moved structure by grid-node index.
//!
//! The micro-FE numbers its nodes compactly in grid order over the load-bearing voxels
//! ([`crate::fe::model::VoxelModel`]), so a node's number changes whenever voxels appear or
//! disappear before it. The numbering is rebuilt here with the solver's own functions
//! ([`crate::fe::bc::load_bearing_voxels`] and [`crate::fe::model::VoxelModel::new`]), which
//! is exactly the model [`crate::fe::solve_axial`] builds. Nodes present before keep their
//! displacement; a new node takes the mean of its old 6-neighbours on the node grid (a new
//! node is at most a move, about one voxel, from the old surface) or, with none, the
//! homogeneous axial field `u = (0, 0, ε z)`.

use crate::fe::BoundaryCondition;
use crate::fe::bc::load_bearing_voxels;
use crate::fe::model::{NO_NODE, VoxelModel};
use crate::volume::BoneMask;

/// The grid-node index of every FE node of `mask` under `bc`, in the solver's node order.
pub fn fe_node_grid_indices(mask: &BoneMask, bc: BoundaryCondition) -> Vec<usize> {
    let dims = mask.dims();
    let (kept, _) = load_bearing_voxels(dims, &mask.voxels, bc);
    VoxelModel::new(dims, mask.grid.voxel_size_mm, &kept, None).grid_of_node
}

/// The previous solution `u_old` (3 per node, nodes `old_nodes`) mapped onto `new_nodes`.
/// `node_dims` is the node grid `[nx + 1, ny + 1, nz + 1]`, `voxel_z_mm` the z voxel edge and
/// `strain` the axial strain of the fallback field.
pub fn transfer_displacements(
    u_old: &[f64],
    old_nodes: &[usize],
    new_nodes: &[usize],
    node_dims: [usize; 3],
    voxel_z_mm: f64,
    strain: f64,
) -> Vec<f64> {
    debug_assert_eq!(u_old.len(), 3 * old_nodes.len());
    let total = node_dims[0] * node_dims[1] * node_dims[2];
    let mut old_of_grid = vec![NO_NODE; total];
    for (n, &g) in old_nodes.iter().enumerate() {
        old_of_grid[g] = n as u32;
    }
    let (sx, sy) = (1, node_dims[0]);
    let sz = node_dims[0] * node_dims[1];
    let mut u = vec![0.0; 3 * new_nodes.len()];
    for (n, &g) in new_nodes.iter().enumerate() {
        let out = &mut u[3 * n..3 * n + 3];
        let o = old_of_grid[g];
        if o != NO_NODE {
            out.copy_from_slice(&u_old[3 * o as usize..3 * o as usize + 3]);
            continue;
        }
        let x = g % node_dims[0];
        let y = (g / node_dims[0]) % node_dims[1];
        let z = g / sz;
        let neighbours = [
            (x > 0).then(|| g - sx),
            (x + 1 < node_dims[0]).then(|| g + sx),
            (y > 0).then(|| g - sy),
            (y + 1 < node_dims[1]).then(|| g + sy),
            (z > 0).then(|| g - sz),
            (z + 1 < node_dims[2]).then(|| g + sz),
        ];
        let mut sum = [0.0; 3];
        let mut k = 0;
        for h in neighbours.into_iter().flatten() {
            let o = old_of_grid[h];
            if o != NO_NODE {
                for c in 0..3 {
                    sum[c] += u_old[3 * o as usize + c];
                }
                k += 1;
            }
        }
        if k > 0 {
            for c in 0..3 {
                out[c] = sum[c] / k as f64;
            }
        } else {
            out[2] = strain * z as f64 * voxel_z_mm;
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fe::{AxialLoad, Material, SolveControl, SolverParams, solve_axial};
    use crate::volume::{Dims, Grid};

    #[test]
    fn node_numbering_matches_the_solver_and_transfer_is_exact_on_old_nodes() {
        // A column with a side branch: the rebuilt numbering must have one grid index per FE
        // node, and mapping a solution onto the same structure must return it unchanged.
        let d = Dims::new(6, 6, 8);
        let grid = Grid::isotropic(d, 0.05);
        let mask = BoneMask::from_fn(grid, |x, y, _| (1..4).contains(&x) && (1..4).contains(&y));
        let load = AxialLoad {
            bc: BoundaryCondition::AxialFree,
            strain: -1e-3,
        };
        let sol = solve_axial(
            &mask,
            &Material::default(),
            &load,
            &SolverParams::default(),
            &SolveControl::default(),
        )
        .unwrap();
        let nodes = fe_node_grid_indices(&mask, load.bc);
        assert_eq!(3 * nodes.len(), sol.dofs);
        let same = transfer_displacements(
            &sol.displacements_mm,
            &nodes,
            &nodes,
            [7, 7, 9],
            0.05,
            -1e-3,
        );
        assert_eq!(same, sol.displacements_mm);
        // Thicken the column by one voxel in x: the warm start on the new structure must
        // start much closer to its solution than zero does (residual of the first iterate).
        let thick = BoneMask::from_fn(grid, |x, y, _| (1..5).contains(&x) && (1..4).contains(&y));
        let new_nodes = fe_node_grid_indices(&thick, load.bc);
        let warm = transfer_displacements(
            &sol.displacements_mm,
            &nodes,
            &new_nodes,
            [7, 7, 9],
            0.05,
            -1e-3,
        );
        let exact = solve_axial(
            &thick,
            &Material::default(),
            &load,
            &SolverParams::default(),
            &SolveControl::default(),
        )
        .unwrap();
        let err = |u: &[f64]| -> f64 {
            u.iter()
                .zip(&exact.displacements_mm)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let zero = vec![0.0; warm.len()];
        assert!(
            err(&warm) < 0.2 * err(&zero),
            "warm-start error {:.3e} vs zero {:.3e}",
            err(&warm),
            err(&zero)
        );
    }
}
