//! View geometry of a macroscale vertebra, computed once per model on the simulation thread:
//! the smoothed body surface, a per-vertex sampler that turns any per-element field into
//! per-vertex values cheaply, and sagittal sections (the surface clipped at a plane x = const,
//! closed by a cap showing the interior field).
//!
//! Recolouring a view for another day is one pass over a compressed sparse table (at most
//! 8 elements per surface vertex, 16 on a clipped edge): no search, no grid lookup, so the
//! render thread can afford it every frame.
//!
//! Sampling rule (the same as [`crate::mesh::try_sample_voxel_field`], restricted to
//! elements): a point takes the trilinear-weighted mean of the element values at the (up to
//! eight) surrounding element centres, weights renormalised over the elements present; a
//! point whose cell holds no element takes the value of the nearest element centre within
//! [`NEAREST_RADIUS_VOXELS`]; beyond that it has no value (NaN).

use std::collections::HashMap;

use crate::mesh::extract::{Field, build_field};
use crate::mesh::{ExtractParams, SurfaceMesh, extract_surface_within};
use crate::remodel::vertebra::Vertebra;
use crate::volume::{BoneMask, Grid};

/// Gaussian smoothing (in voxels) of the element indicator before contouring the vertebra
/// surface: hides the 1 mm staircase and keeps the body's outline within a voxel.
pub const VERTEBRA_SMOOTHING_SIGMA_VOXELS: f64 = 1.0;

/// Largest per-axis distance (voxels) searched for an element around a point whose grid cell
/// holds none.
pub const NEAREST_RADIUS_VOXELS: i64 = 3;

const NO_ELEMENT: u32 = u32::MAX;

/// For each vertex, the elements whose values it averages and their weights (a compressed
/// sparse row table).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VertexSampler {
    offsets: Vec<u32>,
    elements: Vec<u32>,
    weights: Vec<f32>,
}

impl VertexSampler {
    fn new() -> Self {
        Self {
            offsets: vec![0],
            elements: Vec::new(),
            weights: Vec::new(),
        }
    }

    /// Number of vertices the table covers.
    pub fn vertex_count(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Number of (element, weight) entries (the cost of one [`VertexSampler::sample`]).
    pub fn entry_count(&self) -> usize {
        self.elements.len()
    }

    /// Per-vertex values of the per-element `field` (element order of the vertebra), written
    /// to `out` (resized to the vertex count). A vertex without elements, or whose elements
    /// lie outside `field`, gets NaN.
    pub fn sample_into(&self, field: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(self.offsets.windows(2).map(|w| {
            let (a, b) = (w[0] as usize, w[1] as usize);
            if a == b {
                return f32::NAN;
            }
            let mut acc = 0.0f32;
            for k in a..b {
                match field.get(self.elements[k] as usize) {
                    Some(v) => acc += self.weights[k] * v,
                    None => return f32::NAN,
                }
            }
            acc
        }));
    }

    /// [`VertexSampler::sample_into`] into a new vector.
    pub fn sample(&self, field: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.vertex_count());
        self.sample_into(field, &mut out);
        out
    }

    fn close_vertex(&mut self) {
        self.offsets.push(self.elements.len() as u32);
    }

    fn push_point(&mut self, lookup: &ElementLookup, p: [f32; 3]) {
        lookup.weights_at(p, &mut self.elements, &mut self.weights);
        self.close_vertex();
    }

    /// A vertex at `(1 - t) a + t b` of two vertices of `other`: the weighted union of
    /// their entries.
    fn push_blend(&mut self, other: &VertexSampler, a: usize, b: usize, t: f32) {
        for (v, w) in [(a, 1.0 - t), (b, t)] {
            if w <= 0.0 {
                continue;
            }
            let (s, e) = (other.offsets[v] as usize, other.offsets[v + 1] as usize);
            for k in s..e {
                self.elements.push(other.elements[k]);
                self.weights.push(other.weights[k] * w);
            }
        }
        self.close_vertex();
    }
}

/// Element index of every grid voxel.
#[derive(Clone, Debug, PartialEq)]
struct ElementLookup {
    grid: Grid,
    element_of_voxel: Vec<u32>,
}

impl ElementLookup {
    fn new(vertebra: &Vertebra) -> Self {
        let mut element_of_voxel = vec![NO_ELEMENT; vertebra.grid.dims.len()];
        for (e, &i) in vertebra.voxel.iter().enumerate() {
            if let Some(slot) = element_of_voxel.get_mut(i) {
                *slot = e as u32;
            }
        }
        Self {
            grid: vertebra.grid,
            element_of_voxel,
        }
    }

    fn element(&self, x: i64, y: i64, z: i64) -> Option<u32> {
        let d = self.grid.dims;
        if !d.contains(x, y, z) {
            return None;
        }
        let e = self.element_of_voxel[d.index(x as usize, y as usize, z as usize)];
        (e != NO_ELEMENT).then_some(e)
    }

    /// Appends the (element, weight) entries of point `p` (mm).
    fn weights_at(&self, p: [f32; 3], elements: &mut Vec<u32>, weights: &mut Vec<f32>) {
        let g = &self.grid;
        let v: [f64; 3] =
            std::array::from_fn(|a| (p[a] as f64 - g.origin_mm[a]) / g.voxel_size_mm[a]);
        if v.iter().any(|c| !c.is_finite() || c.abs() > 1e9) {
            return;
        }
        let start = elements.len();
        let mut wsum = 0.0f64;
        for ([x, y, z], w) in crate::mesh::sample::trilinear_corners(v) {
            if let Some(e) = self.element(x, y, z) {
                elements.push(e);
                weights.push(w as f32);
                wsum += w;
            }
        }
        if wsum > 0.0 {
            for w in &mut weights[start..] {
                *w = (*w as f64 / wsum) as f32;
            }
            return;
        }
        // Nearest element centre (Euclidean, mm) in growing cubes.
        let centre = v.map(|c| c.round() as i64);
        for r in 1..=NEAREST_RADIUS_VOXELS {
            let mut best: Option<(f64, u32)> = None;
            for z in centre[2] - r..=centre[2] + r {
                for y in centre[1] - r..=centre[1] + r {
                    for x in centre[0] - r..=centre[0] + r {
                        let Some(e) = self.element(x, y, z) else {
                            continue;
                        };
                        let q = [x, y, z];
                        let d2: f64 = (0..3)
                            .map(|a| ((q[a] as f64 - v[a]) * g.voxel_size_mm[a]).powi(2))
                            .sum();
                        if best.is_none_or(|(b, _)| d2 < b) {
                            best = Some((d2, e));
                        }
                    }
                }
            }
            if let Some((_, e)) = best {
                elements.push(e);
                weights.push(1.0);
                return;
            }
        }
    }
}

/// The sampled indicator field the surface was contoured from, kept to draw caps that match
/// the surface.
#[derive(Clone, Debug, PartialEq)]
struct IndicatorField {
    dims: [usize; 3],
    values: Vec<f32>,
    iso: f32,
    coords: [Vec<f64>; 3],
}

impl IndicatorField {
    fn from_field(f: Field) -> Self {
        Self {
            dims: f.dims,
            values: f.values,
            iso: f.iso,
            coords: f.coords,
        }
    }

    fn value(&self, x: usize, y: usize, z: usize) -> f32 {
        self.values[x + self.dims[0] * (y + self.dims[1] * z)]
    }
}

/// Which part of the body a section keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipPlane {
    /// Position of the sagittal plane along x (lateral axis), mm.
    pub x_mm: f32,
    /// Keep the half with x ≤ `x_mm` (the cap then faces +x); otherwise the half with
    /// x ≥ `x_mm` (cap facing −x).
    pub keep_below: bool,
}

/// A renderable section of the vertebra: triangles, and the sampler that colours them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SectionMesh {
    /// The clipped surface followed by the cap, in world mm; no scalar fields.
    pub mesh: SurfaceMesh,
    /// Per-vertex sampler of `mesh` (same vertex order).
    pub sampler: VertexSampler,
    /// Triangles of the cap (the last ones of `mesh`).
    pub cap_triangles: usize,
}

/// The view geometry of one vertebra model (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct VertebraGeometry {
    /// The element grid.
    pub grid: Grid,
    /// The body surface (world mm, outward normals).
    pub surface: SurfaceMesh,
    /// Block-averaging step the surface was extracted with (1 = full resolution).
    pub mesh_step: usize,
    /// Per-vertex sampler of `surface`.
    pub sampler: VertexSampler,
    /// Axis-aligned bounds of the surface, mm.
    pub bounds_mm: ([f32; 3], [f32; 3]),
    lookup: ElementLookup,
    indicator: IndicatorField,
}

impl VertebraGeometry {
    /// Extracts the surface of `vertebra` (at most `max_triangles`, coarser steps if needed)
    /// and precomputes its sampler. Fails only for a model without elements.
    pub fn new(vertebra: &Vertebra, max_triangles: usize) -> Result<Self, String> {
        let grid = vertebra.grid;
        let mut occupied = vec![false; grid.dims.len()];
        for &i in &vertebra.voxel {
            if let Some(o) = occupied.get_mut(i) {
                *o = true;
            }
        }
        let mask = BoneMask::new(grid, occupied)
            .ok_or_else(|| "vertebra grid and elements disagree".to_string())?;
        if mask.count() == 0 {
            return Err("the vertebra has no elements".into());
        }
        let params = ExtractParams {
            smoothing_sigma_voxels: VERTEBRA_SMOOTHING_SIGMA_VOXELS,
            ..ExtractParams::default()
        };
        let (surface, mesh_step) = extract_surface_within(&mask, &params, max_triangles.max(12));
        let indicator = IndicatorField::from_field(build_field(&mask, &params, mesh_step));
        let lookup = ElementLookup::new(vertebra);
        let mut sampler = VertexSampler::new();
        for p in &surface.positions {
            sampler.push_point(&lookup, *p);
        }
        let bounds_mm = surface.bounding_box().unwrap_or(([0.0; 3], [0.0; 3]));
        Ok(Self {
            grid,
            surface,
            mesh_step,
            sampler,
            bounds_mm,
            lookup,
            indicator,
        })
    }

    /// The x range (mm) of the surface: where a clip plane cuts the body.
    pub fn x_range_mm(&self) -> (f32, f32) {
        (self.bounds_mm.0[0], self.bounds_mm.1[0])
    }

    /// The mid-sagittal plane: the middle of the x range.
    pub fn mid_sagittal_x_mm(&self) -> f32 {
        let (lo, hi) = self.x_range_mm();
        0.5 * (lo + hi)
    }

    /// The whole surface as a section (no clipping).
    pub fn unclipped(&self) -> SectionMesh {
        SectionMesh {
            mesh: self.surface.clone(),
            sampler: self.sampler.clone(),
            cap_triangles: 0,
        }
    }

    /// The surface clipped at `clip` and closed by the cap: the cross-section of the body
    /// at the plane, contoured from the same smoothed indicator as the surface (filled
    /// marching squares) and sampled from the elements it cuts.
    pub fn section(&self, clip: &ClipPlane) -> SectionMesh {
        let sign = if clip.keep_below { 1.0f32 } else { -1.0 };
        let xp = clip.x_mm;
        let mut out = SectionMesh {
            mesh: SurfaceMesh::default(),
            sampler: VertexSampler::new(),
            cap_triangles: 0,
        };
        self.clip_surface(xp, sign, &mut out);
        if xp.is_finite() {
            self.add_cap(xp, clip.keep_below, &mut out);
        }
        out
    }

    /// Sutherland–Hodgman clipping of every triangle against the half-space
    /// `sign * (x - xp) <= 0`; vertices created on an edge are shared by its two triangles.
    fn clip_surface(&self, xp: f32, sign: f32, out: &mut SectionMesh) {
        let s = &self.surface;
        let dist: Vec<f32> = s.positions.iter().map(|p| sign * (p[0] - xp)).collect();
        let mut kept = vec![u32::MAX; s.positions.len()];
        let mut on_edge: HashMap<(u32, u32), u32> = HashMap::new();
        let has_normals = s.normals.len() == s.positions.len();

        let vertex = |out: &mut SectionMesh, a: u32, b: u32, t: f32| -> u32 {
            let (ia, ib) = (a as usize, b as usize);
            let lerp = |u: [f32; 3], v: [f32; 3]| -> [f32; 3] {
                std::array::from_fn(|k| u[k] + t * (v[k] - u[k]))
            };
            let pos = lerp(s.positions[ia], s.positions[ib]);
            let nrm = if has_normals {
                normalized(lerp(s.normals[ia], s.normals[ib]))
            } else {
                [0.0, 0.0, 1.0]
            };
            out.mesh.positions.push(pos);
            out.mesh.normals.push(nrm);
            out.sampler.push_blend(&self.sampler, ia, ib, t);
            (out.mesh.positions.len() - 1) as u32
        };

        let mut poly: Vec<u32> = Vec::with_capacity(4);
        for tri in s.indices.chunks_exact(3) {
            let d = [
                dist[tri[0] as usize],
                dist[tri[1] as usize],
                dist[tri[2] as usize],
            ];
            if d.iter().all(|&v| v > 0.0) {
                continue;
            }
            poly.clear();
            for k in 0..3 {
                let (a, b) = (tri[k], tri[(k + 1) % 3]);
                let (da, db) = (d[k], d[(k + 1) % 3]);
                if da <= 0.0 {
                    let ia = a as usize;
                    if kept[ia] == u32::MAX {
                        kept[ia] = vertex(out, a, a, 0.0);
                    }
                    poly.push(kept[ia]);
                }
                if (da <= 0.0) != (db <= 0.0) {
                    let key = (a.min(b), a.max(b));
                    let id = match on_edge.get(&key) {
                        Some(&id) => id,
                        None => {
                            // Parameter from the key's first vertex, so both triangles that
                            // share the edge create the same point.
                            let (p, q) = key;
                            let (dp, dq) = (dist[p as usize], dist[q as usize]);
                            let t = (dp / (dp - dq)).clamp(0.0, 1.0);
                            let id = vertex(out, p, q, t);
                            on_edge.insert(key, id);
                            id
                        }
                    };
                    poly.push(id);
                }
            }
            for k in 1..poly.len().saturating_sub(1) {
                out.mesh
                    .indices
                    .extend_from_slice(&[poly[0], poly[k], poly[k + 1]]);
            }
        }
    }

    /// The cap: filled marching squares on the indicator interpolated to x = xp.
    fn add_cap(&self, xp: f32, keep_below: bool, out: &mut SectionMesh) {
        let f = &self.indicator;
        let cx = &f.coords[0];
        let xp64 = xp as f64;
        let Some(a) = (0..cx.len().saturating_sub(1)).find(|&a| cx[a] <= xp64 && xp64 <= cx[a + 1])
        else {
            return;
        };
        let t = ((xp64 - cx[a]) / (cx[a + 1] - cx[a])).clamp(0.0, 1.0) as f32;
        let (ny, nz) = (f.dims[1], f.dims[2]);
        let slice: Vec<f32> = (0..nz)
            .flat_map(|k| (0..ny).map(move |j| (j, k)))
            .map(|(j, k)| (1.0 - t) * f.value(a, j, k) + t * f.value(a + 1, j, k))
            .collect();
        let at = |j: usize, k: usize| slice[j + ny * k];
        let iso = f.iso;
        let (cy, cz) = (&f.coords[1], &f.coords[2]);
        let normal = if keep_below {
            [1.0, 0.0, 0.0]
        } else {
            [-1.0, 0.0, 0.0]
        };
        let first_cap_triangle = out.mesh.indices.len() / 3;
        // Vertex keys: (j, k, 0) a sample, (j, k, 1) the crossing towards (j+1, k),
        // (j, k, 2) the crossing towards (j, k+1).
        let mut ids: HashMap<(usize, usize, u8), u32> = HashMap::new();
        let mut vertex = |out: &mut SectionMesh, key: (usize, usize, u8)| -> u32 {
            if let Some(&id) = ids.get(&key) {
                return id;
            }
            let (j, k, kind) = key;
            let (y, z) = match kind {
                0 => (cy[j], cz[k]),
                1 => {
                    let (u, v) = (at(j, k), at(j + 1, k));
                    let s = ((iso - u) / (v - u)).clamp(0.0, 1.0) as f64;
                    (cy[j] + s * (cy[j + 1] - cy[j]), cz[k])
                }
                _ => {
                    let (u, v) = (at(j, k), at(j, k + 1));
                    let s = ((iso - u) / (v - u)).clamp(0.0, 1.0) as f64;
                    (cy[j], cz[k] + s * (cz[k + 1] - cz[k]))
                }
            };
            let p = [xp, y as f32, z as f32];
            out.mesh.positions.push(p);
            out.mesh.normals.push(normal);
            out.sampler.push_point(&self.lookup, p);
            let id = (out.mesh.positions.len() - 1) as u32;
            ids.insert(key, id);
            id
        };
        let mut poly: Vec<u32> = Vec::with_capacity(8);
        for k in 0..nz.saturating_sub(1) {
            for j in 0..ny.saturating_sub(1) {
                // Corners counter-clockwise in (y, z), so the polygon faces +x.
                let corners = [(j, k), (j + 1, k), (j + 1, k + 1), (j, k + 1)];
                let inside = corners.map(|(jj, kk)| at(jj, kk) >= iso);
                if !inside.iter().any(|&b| b) {
                    continue;
                }
                poly.clear();
                for c in 0..4 {
                    let (j0, k0) = corners[c];
                    let (j1, k1) = corners[(c + 1) % 4];
                    if inside[c] {
                        poly.push(vertex(out, (j0, k0, 0)));
                    }
                    if inside[c] != inside[(c + 1) % 4] {
                        let key = if k0 == k1 {
                            (j0.min(j1), k0, 1)
                        } else {
                            (j0, k0.min(k1), 2)
                        };
                        poly.push(vertex(out, key));
                    }
                }
                for m in 1..poly.len().saturating_sub(1) {
                    let tri = if keep_below {
                        [poly[0], poly[m], poly[m + 1]]
                    } else {
                        [poly[0], poly[m + 1], poly[m]]
                    };
                    out.mesh.indices.extend_from_slice(&tri);
                }
            }
        }
        out.cap_triangles = out.mesh.indices.len() / 3 - first_cap_triangle;
    }
}

fn normalized(v: [f32; 3]) -> [f32; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if n > 1e-12 && n.is_finite() {
        v.map(|c| c / n)
    } else {
        [0.0, 0.0, 1.0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remodel::density::DensityRelations;
    use crate::remodel::vertebra::VertebraParams;

    fn small_vertebra() -> Vertebra {
        let params = VertebraParams {
            width_mm: 24.0,
            depth_mm: 18.0,
            height_mm: 12.0,
            ..VertebraParams::default()
        };
        Vertebra::builtin(&params, &DensityRelations::default()).expect("small vertebra")
    }

    /// A field equal to each element's x coordinate (mm) is reproduced at the surface
    /// vertices to within a voxel (trilinear weights of a linear function).
    #[test]
    fn sampler_reproduces_a_linear_field_within_a_voxel() {
        let v = small_vertebra();
        let g = VertebraGeometry::new(&v, 100_000).unwrap();
        assert_eq!(g.sampler.vertex_count(), g.surface.positions.len());
        let field: Vec<f32> = v
            .voxel
            .iter()
            .map(|&i| {
                let [x, y, z] = v.grid.dims.coords(i);
                v.grid.world_from_voxel(x as f64, y as f64, z as f64)[0] as f32
            })
            .collect();
        let values = g.sampler.sample(&field);
        for (p, val) in g.surface.positions.iter().zip(&values) {
            assert!(val.is_finite(), "vertex {p:?} has no value");
            assert!((val - p[0]).abs() <= 1.5, "vertex {p:?}: {val}");
        }
        // A constant field is reproduced exactly (weights sum to one).
        let ones = vec![1.0f32; v.element_count()];
        assert!(
            g.sampler
                .sample(&ones)
                .iter()
                .all(|x| (x - 1.0).abs() < 1e-5)
        );
        // A field of the wrong length gives NaN, not a panic.
        assert!(g.sampler.sample(&[1.0]).iter().any(|x| x.is_nan()));
    }

    #[test]
    fn mid_sagittal_section_keeps_one_half_and_caps_it() {
        let v = small_vertebra();
        let g = VertebraGeometry::new(&v, 100_000).unwrap();
        let xm = g.mid_sagittal_x_mm();
        let s = g.section(&ClipPlane {
            x_mm: xm,
            keep_below: true,
        });
        assert!(s.cap_triangles > 50, "cap {}", s.cap_triangles);
        assert_eq!(s.sampler.vertex_count(), s.mesh.positions.len());
        assert!(s.mesh.positions.iter().all(|p| p[0] <= xm + 1e-4));
        // The cap covers about the body's mid-sagittal cross-section: depth × height.
        let area: f64 = s.mesh.indices[s.mesh.indices.len() - 3 * s.cap_triangles..]
            .chunks_exact(3)
            .map(|t| {
                let p = |i: u32| s.mesh.positions[i as usize];
                let (a, b, c) = (p(t[0]), p(t[1]), p(t[2]));
                let u = [b[1] - a[1], b[2] - a[2]];
                let w = [c[1] - a[1], c[2] - a[2]];
                // Signed: positive = counter-clockwise in (y, z) = facing +x.
                0.5 * (u[0] * w[1] - u[1] * w[0]) as f64
            })
            .sum();
        let expect = 18.0 * 12.0;
        assert!(
            area > 0.75 * expect && area < 1.1 * expect,
            "cap area {area:.1} mm² vs {expect}"
        );
        // Every cap vertex has a value.
        let ones = vec![1.0f32; v.element_count()];
        assert!(s.sampler.sample(&ones).iter().all(|x| x.is_finite()));
        // The other side faces −x and lies at x ≥ the plane.
        let other = g.section(&ClipPlane {
            x_mm: xm,
            keep_below: false,
        });
        assert!(other.mesh.positions.iter().all(|p| p[0] >= xm - 1e-4));
        assert!(other.cap_triangles > 50);
        // Outside the body: everything or nothing, no cap.
        let all = g.section(&ClipPlane {
            x_mm: 1000.0,
            keep_below: true,
        });
        assert_eq!(all.mesh.indices.len(), g.surface.indices.len());
        assert_eq!(all.cap_triangles, 0);
        let none = g.section(&ClipPlane {
            x_mm: f32::NAN,
            keep_below: true,
        });
        assert!(none.mesh.indices.is_empty());
    }
}
