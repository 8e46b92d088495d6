//! The voxel finite-element model: one hexahedral element per occupied voxel, nodes at the
//! voxel corners, numbered compactly in grid order (z slowest) for memory locality.

use crate::volume::Dims;

/// Marks a grid node that carries no degree of freedom.
pub const NO_NODE: u32 = u32::MAX;

/// Elements, nodes and their numbering on one voxel grid.
#[derive(Clone, Debug)]
pub struct VoxelModel {
    /// Element (voxel) grid dimensions.
    pub dims: Dims,
    /// Voxel edge lengths (mm).
    pub voxel_size_mm: [f64; 3],
    /// Compact node number of each grid node (`(nx+1)(ny+1)(nz+1)` entries), or [`NO_NODE`].
    pub node_of_grid: Vec<u32>,
    /// Linear grid-node index of each node.
    pub grid_of_node: Vec<usize>,
    /// The eight node numbers of each element, local order `a = dx + 2 dy + 4 dz`.
    pub elements: Vec<[u32; 8]>,
    /// Linear voxel index of each element.
    pub element_voxel: Vec<usize>,
    /// Elements of voxel layer z are `layer_start[z]..layer_start[z + 1]`.
    pub layer_start: Vec<usize>,
    /// Per-element modulus scale (relative to the material's E); `None` = all 1.
    pub modulus_scale: Option<Vec<f32>>,
}

impl VoxelModel {
    /// Builds the model of the occupied voxels. `modulus_scale`, if given, is indexed by voxel
    /// (grid-indexed, like `occupied`).
    pub fn new(
        dims: Dims,
        voxel_size_mm: [f64; 3],
        occupied: &[bool],
        modulus_scale: Option<&[f32]>,
    ) -> Self {
        let nd = node_dims(dims);
        let n_grid_nodes = nd[0] * nd[1] * nd[2];
        let mut node_of_grid = vec![NO_NODE; n_grid_nodes];
        // Mark nodes of occupied voxels.
        for z in 0..dims.nz {
            for y in 0..dims.ny {
                for x in 0..dims.nx {
                    if occupied[dims.index(x, y, z)] {
                        for off in super::element::NODE_OFFSETS {
                            let g = (x + off[0]) + nd[0] * ((y + off[1]) + nd[1] * (z + off[2]));
                            node_of_grid[g] = 0;
                        }
                    }
                }
            }
        }
        let mut grid_of_node = Vec::new();
        for (g, n) in node_of_grid.iter_mut().enumerate() {
            if *n == 0 {
                *n = u32::try_from(grid_of_node.len()).expect("more than 2³² nodes");
                grid_of_node.push(g);
            }
        }
        let mut elements = Vec::new();
        let mut element_voxel = Vec::new();
        let mut scales = modulus_scale.map(|_| Vec::new());
        let mut layer_start = Vec::with_capacity(dims.nz + 1);
        for z in 0..dims.nz {
            layer_start.push(elements.len());
            for y in 0..dims.ny {
                for x in 0..dims.nx {
                    let v = dims.index(x, y, z);
                    if !occupied[v] {
                        continue;
                    }
                    let mut e = [0u32; 8];
                    for (a, off) in super::element::NODE_OFFSETS.iter().enumerate() {
                        let g = (x + off[0]) + nd[0] * ((y + off[1]) + nd[1] * (z + off[2]));
                        e[a] = node_of_grid[g];
                    }
                    elements.push(e);
                    element_voxel.push(v);
                    if let (Some(s), Some(src)) = (scales.as_mut(), modulus_scale) {
                        s.push(src[v]);
                    }
                }
            }
        }
        layer_start.push(elements.len());
        Self {
            dims,
            voxel_size_mm,
            node_of_grid,
            grid_of_node,
            elements,
            element_voxel,
            layer_start,
            modulus_scale: scales,
        }
    }

    pub fn node_count(&self) -> usize {
        self.grid_of_node.len()
    }

    pub fn dof_count(&self) -> usize {
        3 * self.node_count()
    }

    pub fn element_count(&self) -> usize {
        self.elements.len()
    }

    /// Node-grid dimensions `[nx + 1, ny + 1, nz + 1]`.
    pub fn node_dims(&self) -> [usize; 3] {
        node_dims(self.dims)
    }

    /// Grid coordinates of a node.
    #[inline]
    pub fn node_coords(&self, node: usize) -> [usize; 3] {
        let nd = self.node_dims();
        let g = self.grid_of_node[node];
        [g % nd[0], (g / nd[0]) % nd[1], g / (nd[0] * nd[1])]
    }

    /// Node number at grid coordinates, if that grid node carries one.
    #[inline]
    pub fn node_at(&self, x: usize, y: usize, z: usize) -> Option<usize> {
        let nd = self.node_dims();
        if x >= nd[0] || y >= nd[1] || z >= nd[2] {
            return None;
        }
        let n = self.node_of_grid[x + nd[0] * (y + nd[1] * z)];
        (n != NO_NODE).then_some(n as usize)
    }

    /// Modulus scale of element `e`.
    #[inline]
    pub fn scale(&self, e: usize) -> f64 {
        self.modulus_scale.as_ref().map_or(1.0, |s| s[e] as f64)
    }

    /// The next coarser model: voxels merged 2×2×2, a coarse voxel present when any child is,
    /// with modulus scale = mean of the eight children's scales (empty children count as 0).
    /// This "E-averaging" coarsening follows Arbenz et al. (2008, Int J Numer Meth Eng 73:927)
    /// and Flaig & Arbenz (2011), the multigrid of ParOSol.
    pub fn coarsen(&self) -> VoxelModel {
        let d = self.dims;
        let cd = Dims::new(d.nx.div_ceil(2), d.ny.div_ceil(2), d.nz.div_ceil(2));
        let mut sum = vec![0.0f32; cd.len()];
        for (e, &v) in self.element_voxel.iter().enumerate() {
            let [x, y, z] = d.coords(v);
            sum[cd.index(x / 2, y / 2, z / 2)] += self.scale(e) as f32;
        }
        let occupied: Vec<bool> = sum.iter().map(|&s| s > 0.0).collect();
        let scale: Vec<f32> = sum.iter().map(|&s| s / 8.0).collect();
        let h = self.voxel_size_mm;
        VoxelModel::new(
            cd,
            [2.0 * h[0], 2.0 * h[1], 2.0 * h[2]],
            &occupied,
            Some(&scale),
        )
    }
}

pub fn node_dims(d: Dims) -> [usize; 3] {
    [d.nx + 1, d.ny + 1, d.nz + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_adjacent_voxels_share_four_nodes() {
        let dims = Dims::new(2, 1, 1);
        let m = VoxelModel::new(dims, [1.0; 3], &[true, true], None);
        assert_eq!(m.element_count(), 2);
        assert_eq!(m.node_count(), 12);
        assert_eq!(m.elements[0][1], m.elements[1][0]);
        assert_eq!(m.node_coords(m.elements[1][7] as usize), [2, 1, 1]);
    }

    #[test]
    fn coarsening_averages_the_modulus_of_the_children() {
        let dims = Dims::new(3, 2, 2);
        let mut occ = vec![false; dims.len()];
        occ[dims.index(0, 0, 0)] = true;
        occ[dims.index(1, 1, 1)] = true;
        occ[dims.index(2, 0, 0)] = true;
        let m = VoxelModel::new(dims, [1.0; 3], &occ, None);
        let c = m.coarsen();
        assert_eq!(c.dims, Dims::new(2, 1, 1));
        assert_eq!(c.element_count(), 2);
        let s: Vec<f64> = (0..2).map(|e| c.scale(e)).collect();
        assert_eq!(s, vec![0.25, 0.125]);
        assert_eq!(c.voxel_size_mm, [2.0; 3]);
    }
}
