//! Boundary conditions of the voxel micro-FE (design §2). z is the loading axis.
//!
//! - `axial-free`: bottom face uz = 0, the rigid-body modes fixed by a statically determinate
//!   set of point constraints (ux = uy = 0 at one bottom node A, uy = 0 at a node B on the same
//!   y row), top face uz prescribed, lateral faces free. A homogeneous solid then deforms
//!   exactly homogeneously, so a solid cube gives E_app = E.
//! - `axial-clamped`: bottom face fully fixed; top face uz prescribed, ux, uy free.
//! - `axial-confined`: bottom face fully fixed; top face uz prescribed and ux = uy = 0.
//! - `kubc`: kinematic uniform boundary conditions, u = ε·x on every node of the box surface
//!   (Hazanov & Huet 1994; Pahr & Zysset 2008 for bone), six load cases.

use serde::{Deserialize, Serialize};

use super::model::VoxelModel;

/// The boundary-condition sets of design §2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoundaryCondition {
    AxialFree,
    AxialClamped,
    AxialConfined,
    Kubc,
}

impl BoundaryCondition {
    pub const ALL: [BoundaryCondition; 4] = [
        BoundaryCondition::AxialFree,
        BoundaryCondition::AxialClamped,
        BoundaryCondition::AxialConfined,
        BoundaryCondition::Kubc,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            BoundaryCondition::AxialFree => "axial-free",
            BoundaryCondition::AxialClamped => "axial-clamped",
            BoundaryCondition::AxialConfined => "axial-confined",
            BoundaryCondition::Kubc => "kubc",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }
}

impl std::fmt::Display for BoundaryCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A constrained plane of nodes: all nodes with node coordinate `position` along `axis` have
/// the components flagged in `components` fixed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlaneConstraint {
    pub axis: usize,
    pub position: usize,
    pub components: [bool; 3],
}

/// A single constrained node, by node-grid coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointConstraint {
    pub coords: [usize; 3],
    pub components: [bool; 3],
}

/// The constrained degrees of freedom of a problem, described geometrically so that the same
/// description can be restricted to the coarse multigrid levels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConstraintSpec {
    pub planes: Vec<PlaneConstraint>,
    pub points: Vec<PointConstraint>,
}

impl ConstraintSpec {
    /// The constraints of `bc` on `model` (level 0).
    pub fn for_axial_or_kubc(bc: BoundaryCondition, model: &VoxelModel) -> Self {
        let nz = model.dims.nz;
        let all = [true; 3];
        let z_only = [false, false, true];
        let mut spec = ConstraintSpec::default();
        match bc {
            BoundaryCondition::AxialFree => {
                spec.planes.push(PlaneConstraint {
                    axis: 2,
                    position: 0,
                    components: z_only,
                });
                spec.planes.push(PlaneConstraint {
                    axis: 2,
                    position: nz,
                    components: z_only,
                });
                if let Some((a, b)) = rigid_body_points(model) {
                    spec.points.push(PointConstraint {
                        coords: a,
                        components: [true, true, false],
                    });
                    spec.points.push(PointConstraint {
                        coords: b,
                        components: [false, true, false],
                    });
                }
            }
            BoundaryCondition::AxialClamped | BoundaryCondition::AxialConfined => {
                spec.planes.push(PlaneConstraint {
                    axis: 2,
                    position: 0,
                    components: all,
                });
                spec.planes.push(PlaneConstraint {
                    axis: 2,
                    position: nz,
                    components: if bc == BoundaryCondition::AxialConfined {
                        all
                    } else {
                        z_only
                    },
                });
            }
            BoundaryCondition::Kubc => {
                let n = model.dims.as_array();
                for axis in 0..3 {
                    for position in [0, n[axis]] {
                        spec.planes.push(PlaneConstraint {
                            axis,
                            position,
                            components: all,
                        });
                    }
                }
            }
        }
        spec
    }

    /// The same constraints one multigrid level coarser (node coordinates halved). Planes that
    /// fall between coarse nodes are dropped (the coarse problem is only a preconditioner and
    /// stays non-singular through the bottom face); points are mapped to their parent node.
    pub fn coarsen(&self) -> Self {
        Self {
            planes: self
                .planes
                .iter()
                .filter(|p| p.position % 2 == 0)
                .map(|p| PlaneConstraint {
                    position: p.position / 2,
                    ..*p
                })
                .collect(),
            points: self
                .points
                .iter()
                .map(|p| PointConstraint {
                    coords: p.coords.map(|c| c / 2),
                    ..*p
                })
                .collect(),
        }
    }

    /// Per-DOF flags (`true` = constrained) on `model`.
    pub fn fixed_dofs(&self, model: &VoxelModel) -> Vec<bool> {
        let mut fixed = vec![false; model.dof_count()];
        for node in 0..model.node_count() {
            let c = model.node_coords(node);
            for p in &self.planes {
                if c[p.axis] == p.position {
                    for k in 0..3 {
                        fixed[3 * node + k] |= p.components[k];
                    }
                }
            }
        }
        for p in &self.points {
            if let Some(node) = model.node_at(p.coords[0], p.coords[1], p.coords[2]) {
                for k in 0..3 {
                    fixed[3 * node + k] |= p.components[k];
                }
            }
        }
        fixed
    }
}

/// Two bottom nodes on one y row, as far apart in x as possible: A gets ux = uy = 0, B gets
/// uy = 0, which removes the in-plane translations and the rotation about z without
/// restraining a homogeneous lateral contraction about A.
fn rigid_body_points(model: &VoxelModel) -> Option<([usize; 3], [usize; 3])> {
    let nd = model.node_dims();
    let mut best: Option<([usize; 3], [usize; 3])> = None;
    let mut best_span = 0usize;
    for y in 0..nd[1] {
        let xs: Vec<usize> = (0..nd[0])
            .filter(|&x| model.node_at(x, y, 0).is_some())
            .collect();
        if let (Some(&x0), Some(&x1)) = (xs.first(), xs.last())
            && (best.is_none() || x1 - x0 > best_span)
        {
            best_span = x1 - x0;
            best = Some(([x0, y, 0], [x1, y, 0]));
        }
    }
    best
}

/// Keeps the voxels that can carry load under `bc` and returns them with the number removed.
///
/// Voxels are grouped into 6-connected (face-sharing) components; a component joined to the
/// rest only through an edge or a corner would be a mechanism. Axial conditions keep the
/// components that touch both the bottom (z = 0) and the top (z = nz − 1) layer — for
/// `axial-free` only the largest of them, since the point constraints hold one body; `kubc`
/// keeps the components that touch any face of the box.
pub fn load_bearing_voxels(
    dims: crate::volume::Dims,
    occupied: &[bool],
    bc: BoundaryCondition,
) -> (Vec<bool>, usize) {
    let n = dims.len();
    let mut label = vec![u32::MAX; n];
    let mut comps: Vec<(usize, bool, bool, bool)> = Vec::new(); // size, bottom, top, any face
    let mut stack = Vec::new();
    for start in 0..n {
        if !occupied[start] || label[start] != u32::MAX {
            continue;
        }
        let id = comps.len() as u32;
        let mut info = (0usize, false, false, false);
        label[start] = id;
        stack.push(start);
        while let Some(v) = stack.pop() {
            let [x, y, z] = dims.coords(v);
            info.0 += 1;
            info.1 |= z == 0;
            info.2 |= z + 1 == dims.nz;
            info.3 |= x == 0
                || y == 0
                || z == 0
                || x + 1 == dims.nx
                || y + 1 == dims.ny
                || z + 1 == dims.nz;
            let mut visit = |w: usize| {
                if occupied[w] && label[w] == u32::MAX {
                    label[w] = id;
                    stack.push(w);
                }
            };
            if x > 0 {
                visit(v - 1);
            }
            if x + 1 < dims.nx {
                visit(v + 1);
            }
            if y > 0 {
                visit(v - dims.nx);
            }
            if y + 1 < dims.ny {
                visit(v + dims.nx);
            }
            if z > 0 {
                visit(v - dims.nx * dims.ny);
            }
            if z + 1 < dims.nz {
                visit(v + dims.nx * dims.ny);
            }
        }
        comps.push(info);
    }
    let keep: Vec<bool> = match bc {
        BoundaryCondition::Kubc => comps.iter().map(|c| c.3).collect(),
        BoundaryCondition::AxialClamped | BoundaryCondition::AxialConfined => {
            comps.iter().map(|c| c.1 && c.2).collect()
        }
        BoundaryCondition::AxialFree => {
            let largest = comps
                .iter()
                .enumerate()
                .filter(|(_, c)| c.1 && c.2)
                .max_by_key(|(_, c)| c.0)
                .map(|(i, _)| i);
            (0..comps.len()).map(|i| Some(i) == largest).collect()
        }
    };
    let mut removed = 0;
    let kept: Vec<bool> = label
        .iter()
        .map(|&l| {
            if l == u32::MAX {
                false
            } else if keep[l as usize] {
                true
            } else {
                removed += 1;
                false
            }
        })
        .collect();
    (kept, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Dims;

    #[test]
    fn floating_and_dangling_components_are_removed_for_axial_loading() {
        let dims = Dims::new(5, 1, 4);
        let mut occ = vec![false; dims.len()];
        for z in 0..4 {
            occ[dims.index(0, 0, z)] = true; // column spanning bottom to top
        }
        occ[dims.index(2, 0, 0)] = true; // touches the bottom only
        occ[dims.index(4, 0, 2)] = true; // floating
        let (kept, removed) = load_bearing_voxels(dims, &occ, BoundaryCondition::AxialClamped);
        assert_eq!(removed, 2);
        assert_eq!(kept.iter().filter(|&&k| k).count(), 4);
        let (kept, removed) = load_bearing_voxels(dims, &occ, BoundaryCondition::Kubc);
        assert_eq!(removed, 0);
        assert_eq!(kept, occ);
    }

    #[test]
    fn edge_contact_does_not_join_components() {
        let dims = Dims::new(2, 1, 2);
        let mut occ = vec![false; dims.len()];
        occ[dims.index(0, 0, 0)] = true;
        occ[dims.index(1, 0, 1)] = true;
        let (_, removed) = load_bearing_voxels(dims, &occ, BoundaryCondition::AxialClamped);
        assert_eq!(
            removed, 2,
            "two voxels meeting at an edge are a hinge, not a column"
        );
    }

    #[test]
    fn constraint_planes_between_coarse_nodes_are_dropped() {
        let spec = ConstraintSpec {
            planes: vec![
                PlaneConstraint {
                    axis: 2,
                    position: 0,
                    components: [true; 3],
                },
                PlaneConstraint {
                    axis: 2,
                    position: 5,
                    components: [false, false, true],
                },
            ],
            points: vec![PointConstraint {
                coords: [7, 3, 0],
                components: [true, true, false],
            }],
        };
        let c = spec.coarsen();
        assert_eq!(c.planes.len(), 1);
        assert_eq!(c.points[0].coords, [3, 1, 0]);
    }
}
