//! Triangle surface meshes extracted from voxel volumes, and exporters.
//!
//! The core emits a plain [`SurfaceMesh`]; only `src/app` turns it into a `bevy::Mesh`.
//!
//! - [`extract_surface`]: watertight marching cubes on the bone mask (optional Gaussian
//!   pre-smoothing, optional `step` downsampling for a light live view), see [`extract`].
//! - [`sample_voxel_field`]: per-vertex values of a per-voxel field (e.g. strain energy
//!   density) for colouring.
//! - [`write_mesh`]: binary STL, binary PLY, OBJ and legacy VTK, chosen by extension.

use std::path::PathBuf;

use rayon::prelude::*;

pub mod export;
pub mod extract;
pub mod sample;
mod tables;

pub use export::{write_mesh, write_obj, write_ply, write_stl, write_vtk};
pub use extract::{ExtractParams, exposed_face_count, extract_surface, extract_surface_within};
pub use sample::{sample_voxel_field, try_sample_voxel_field};

/// A triangle surface in world coordinates (mm), with optional per-vertex scalar fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SurfaceMesh {
    /// Vertex positions in mm.
    pub positions: Vec<[f32; 3]>,
    /// Unit outward normals, one per vertex.
    pub normals: Vec<[f32; 3]>,
    /// Triangles as vertex index triples, counter-clockwise seen from outside.
    pub indices: Vec<u32>,
    /// Named per-vertex scalar fields (e.g. "sed_mpa"), each `positions.len()` long.
    pub scalars: Vec<(String, Vec<f32>)>,
}

/// Errors of the mesh exporters and of attaching per-vertex fields.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("cannot write mesh to {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot write mesh to {}: unknown file extension (expected .stl, .ply, .obj or .vtk)",
        path.display()
    )]
    UnknownFormat { path: PathBuf },
    #[error("cannot write mesh to {}: {reason}", path.display())]
    InvalidMesh { path: PathBuf, reason: String },
    #[error("per-vertex field `{name}`: {reason}")]
    Field { name: String, reason: String },
}

/// Triangles per chunk in parallel reductions (fixed, so sums do not depend on thread count).
const CHUNK_TRIS: usize = 8192;

impl SurfaceMesh {
    pub fn vertex_count(&self) -> usize {
        self.positions.len()
    }

    pub fn triangle_count(&self) -> usize {
        self.indices.len() / 3
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The three corner positions of triangle `t` (indices must be in range).
    #[inline]
    fn corners(&self, t: &[u32]) -> [[f64; 3]; 3] {
        [0, 1, 2].map(|k| self.positions[t[k] as usize].map(f64::from))
    }

    /// Total surface area in mm². Indices out of range are skipped.
    pub fn area_mm2(&self) -> f64 {
        if !self.indices_in_range() {
            return f64::NAN;
        }
        self.chunked_sum(|[a, b, c]| 0.5 * norm(cross(sub(b, a), sub(c, a))))
    }

    /// Volume enclosed by the surface in mm³, by the divergence theorem:
    /// `V = 1/6 Σ (a - r) · ((b - r) × (c - r))` over the triangles, `r` a reference point.
    /// Positive for a closed outward-oriented surface; meaningful only when
    /// [`SurfaceMesh::is_watertight`].
    pub fn enclosed_volume_mm3(&self) -> f64 {
        if !self.indices_in_range() {
            return f64::NAN;
        }
        let Some(r) = self.positions.first().map(|p| p.map(f64::from)) else {
            return 0.0;
        };
        self.chunked_sum(|[a, b, c]| {
            let (a, b, c) = (sub(a, r), sub(b, r), sub(c, r));
            dot(a, cross(b, c)) / 6.0
        })
    }

    fn chunked_sum(&self, f: impl Fn([[f64; 3]; 3]) -> f64 + Sync) -> f64 {
        let partial: Vec<f64> = self
            .indices
            .par_chunks(3 * CHUNK_TRIS)
            .map(|chunk| chunk.chunks_exact(3).map(|t| f(self.corners(t))).sum())
            .collect();
        partial.iter().sum()
    }

    fn indices_in_range(&self) -> bool {
        let n = self.positions.len();
        self.indices.len().is_multiple_of(3) && self.indices.par_iter().all(|&i| (i as usize) < n)
    }

    /// True when every edge is shared by exactly two triangles that traverse it in opposite
    /// directions (a closed, consistently oriented 2-manifold-with-pinches), no triangle repeats
    /// a vertex and all indices are in range. An empty mesh is trivially closed.
    pub fn is_watertight(&self) -> bool {
        if !self.indices_in_range() {
            return false;
        }
        let mut directed: Vec<u64> = Vec::with_capacity(self.indices.len());
        for t in self.indices.chunks_exact(3) {
            if t[0] == t[1] || t[1] == t[2] || t[0] == t[2] {
                return false;
            }
            for k in 0..3 {
                directed.push((u64::from(t[k]) << 32) | u64::from(t[(k + 1) % 3]));
            }
        }
        directed.par_sort_unstable();
        if directed.par_windows(2).any(|w| w[0] == w[1]) {
            return false;
        }
        directed
            .par_iter()
            .all(|&e| directed.binary_search(&e.rotate_right(32)).is_ok())
    }

    /// Axis-aligned bounds `(min, max)` of the vertices in mm, `None` without vertices.
    pub fn bounding_box(&self) -> Option<([f32; 3], [f32; 3])> {
        let first = *self.positions.first()?;
        Some(self.positions.iter().fold((first, first), |(lo, hi), p| {
            (
                [lo[0].min(p[0]), lo[1].min(p[1]), lo[2].min(p[2])],
                [hi[0].max(p[0]), hi[1].max(p[1]), hi[2].max(p[2])],
            )
        }))
    }

    /// Per-vertex sums of the adjacent triangles' area vectors (`(b - a) × (c - a)`, i.e. twice
    /// the area times the unit normal), not normalised. Triangles with an index out of range are
    /// skipped. Parallel over chunks of triangles, each accumulating into the (for extracted
    /// meshes, short) range of vertex numbers it touches.
    pub fn area_weighted_normals(&self) -> Vec<[f32; 3]> {
        let n = self.positions.len();
        let valid = |t: &[u32]| t.iter().all(|&i| (i as usize) < n);
        let accumulate = |tris: &[u32], lo: usize, acc: &mut [[f32; 3]]| {
            for t in tris.chunks_exact(3) {
                if !valid(t) {
                    continue;
                }
                let [a, b, c] = [0, 1, 2].map(|k| self.positions[t[k] as usize]);
                let e1 = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
                let e2 = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
                let f = [
                    e1[1] * e2[2] - e1[2] * e2[1],
                    e1[2] * e2[0] - e1[0] * e2[2],
                    e1[0] * e2[1] - e1[1] * e2[0],
                ];
                for &i in t {
                    let v = &mut acc[i as usize - lo];
                    v[0] += f[0];
                    v[1] += f[1];
                    v[2] += f[2];
                }
            }
        };
        let ranges: Vec<(usize, usize)> = self
            .indices
            .par_chunks(3 * CHUNK_TRIS)
            .map(|chunk| {
                chunk
                    .chunks_exact(3)
                    .filter(|t| valid(t))
                    .flatten()
                    .fold((usize::MAX, 0), |(lo, hi), &i| {
                        (lo.min(i as usize), hi.max(i as usize + 1))
                    })
            })
            .collect();
        let span: usize = ranges.iter().map(|&(lo, hi)| hi.saturating_sub(lo)).sum();
        let mut out = vec![[0f32; 3]; n];
        if span > 8 * n.max(1) {
            // Scattered indices: one serial pass is cheaper than many wide buffers.
            accumulate(&self.indices, 0, &mut out);
            return out;
        }
        let partial: Vec<(usize, Vec<[f32; 3]>)> = self
            .indices
            .par_chunks(3 * CHUNK_TRIS)
            .zip(ranges.par_iter())
            .map(|(chunk, &(lo, hi))| {
                let mut acc = vec![[0f32; 3]; hi.saturating_sub(lo)];
                if !acc.is_empty() {
                    accumulate(chunk, lo, &mut acc);
                }
                (lo, acc)
            })
            .collect();
        for (lo, acc) in partial {
            for (o, a) in out[lo..].iter_mut().zip(&acc) {
                o[0] += a[0];
                o[1] += a[1];
                o[2] += a[2];
            }
        }
        out
    }

    /// The per-vertex field called `name`, if present.
    pub fn scalar(&self, name: &str) -> Option<&[f32]> {
        self.scalars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Adds (or replaces) the per-vertex field `name`; it must have one value per vertex.
    pub fn set_scalar(&mut self, name: &str, values: Vec<f32>) -> Result<(), MeshError> {
        if values.len() != self.positions.len() {
            return Err(MeshError::Field {
                name: name.to_owned(),
                reason: format!(
                    "{} values for a mesh of {} vertices",
                    values.len(),
                    self.positions.len()
                ),
            });
        }
        match self.scalars.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = values,
            None => self.scalars.push((name.to_owned(), values)),
        }
        Ok(())
    }

    /// Samples a per-voxel field defined on `mask.grid` (see [`try_sample_voxel_field`]) and
    /// stores it as the per-vertex field `name`.
    pub fn add_voxel_field(
        &mut self,
        mask: &crate::volume::BoneMask,
        field: &[f32],
        name: &str,
    ) -> Result<(), MeshError> {
        let values = try_sample_voxel_field(self, &mask.grid, mask, field, name)?;
        self.set_scalar(name, values)
    }
}

#[inline]
fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

#[inline]
fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

#[inline]
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[inline]
fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit tetrahedron, outward oriented.
    fn tetra() -> SurfaceMesh {
        SurfaceMesh {
            positions: vec![
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 0.0, 1.0],
            ],
            normals: vec![[0.0, 0.0, 1.0]; 4],
            indices: vec![0, 2, 1, 0, 1, 3, 0, 3, 2, 1, 2, 3],
            scalars: Vec::new(),
        }
    }

    /// Exact measures of the unit right tetrahedron (volume 1/6, area 3/2 + √3/2); tolerance
    /// 1e-12 (f64 sums of exact f32 inputs).
    #[test]
    fn tetrahedron_measures_are_exact() {
        let m = tetra();
        assert!(m.is_watertight());
        assert!((m.enclosed_volume_mm3() - 1.0 / 6.0).abs() < 1e-12);
        assert!((m.area_mm2() - (1.5 + 3f64.sqrt() / 2.0)).abs() < 1e-12);
        assert_eq!(m.bounding_box(), Some(([0.0; 3], [1.0; 3])));
    }

    #[test]
    fn open_flipped_or_broken_meshes_are_not_watertight() {
        let mut open = tetra();
        open.indices.truncate(9);
        assert!(!open.is_watertight());
        let mut flipped = tetra();
        flipped.indices.swap(0, 1);
        assert!(!flipped.is_watertight());
        let mut doubled = tetra();
        let extra = doubled.indices.clone();
        doubled.indices.extend(extra);
        assert!(!doubled.is_watertight());
        let mut bad = tetra();
        bad.indices[0] = 99;
        assert!(!bad.is_watertight());
        assert!(bad.enclosed_volume_mm3().is_nan());
    }

    #[test]
    fn inverted_tetrahedron_has_negative_volume() {
        let mut m = tetra();
        for t in m.indices.chunks_exact_mut(3) {
            t.swap(1, 2);
        }
        assert!(m.is_watertight());
        assert!((m.enclosed_volume_mm3() + 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn set_scalar_checks_length_and_replaces_by_name() {
        let mut m = tetra();
        assert!(matches!(
            m.set_scalar("sed", vec![1.0; 3]),
            Err(MeshError::Field { .. })
        ));
        m.set_scalar("sed", vec![1.0; 4]).unwrap();
        m.set_scalar("sed", vec![2.0; 4]).unwrap();
        assert_eq!(m.scalars.len(), 1);
        assert_eq!(m.scalar("sed"), Some(&[2.0f32; 4][..]));
    }
}
