//! Per-vertex values of per-voxel fields, e.g. the strain energy density of the voxel micro-FE
//! model (one value per voxel, grid-indexed, 0 in background), for colouring the surface.
//!
//! Rule: a vertex takes the trilinear-weighted mean of the field over the *bone* voxels among
//! the (up to eight) voxel centres of the grid cell containing it, weights renormalised over
//! those bone voxels. On a binary marching-cubes surface every vertex lies on the segment
//! between a bone and a background voxel centre, so it takes exactly the value of its bone
//! voxel. Where the cell holds no bone voxel (smoothed or coarse meshes), the vertex takes the
//! mean over the nearest bone voxels (Euclidean, in mm) within [`SEARCH_RADIUS_VOXELS`]; beyond
//! that it gets 0, the background value.

use rayon::prelude::*;

use super::{MeshError, SurfaceMesh};
use crate::volume::{BoneMask, Grid};

/// Largest distance (in voxels, per axis) searched for a bone voxel around a vertex whose cell
/// holds none.
pub const SEARCH_RADIUS_VOXELS: i64 = 8;

/// Per-vertex values of the per-voxel `field` (see the module docs). `grid` is the grid the
/// field and `mask` are indexed on; `name` names the field in the error. Returns an error when
/// the lengths or grids disagree.
pub fn try_sample_voxel_field(
    mesh: &SurfaceMesh,
    grid: &Grid,
    mask: &BoneMask,
    field: &[f32],
    name: &str,
) -> Result<Vec<f32>, MeshError> {
    let err = |reason: String| MeshError::Field {
        name: name.to_owned(),
        reason,
    };
    let d = grid.dims;
    let Some(len) = d.checked_len() else {
        return Err(err("grid dimensions overflow".into()));
    };
    if mask.grid.dims != d || mask.voxels.len() != len {
        return Err(err(format!(
            "mask grid {:?} does not match the field grid {:?}",
            mask.grid.dims.as_array(),
            d.as_array()
        )));
    }
    if field.len() != len {
        return Err(err(format!(
            "{} values for a grid of {} voxels",
            field.len(),
            len
        )));
    }
    if grid
        .voxel_size_mm
        .iter()
        .any(|&v| !(v.is_finite() && v > 0.0))
    {
        return Err(err(format!(
            "voxel size {:?} mm is not positive",
            grid.voxel_size_mm
        )));
    }
    Ok(mesh
        .positions
        .par_iter()
        .map(|p| sample_at(grid, mask, field, *p))
        .collect())
}

/// [`try_sample_voxel_field`] for callers that colour a mesh and prefer "no colour" over an
/// error: when the field, mask and grid disagree it returns NaN for every vertex (renderers
/// show NaN as "no data").
pub fn sample_voxel_field(
    mesh: &SurfaceMesh,
    grid: &Grid,
    mask: &BoneMask,
    field: &[f32],
    name: &str,
) -> Vec<f32> {
    try_sample_voxel_field(mesh, grid, mask, field, name)
        .unwrap_or_else(|_| vec![f32::NAN; mesh.positions.len()])
}

/// The voxel centres around the continuous voxel coordinates `v` (voxel (0, 0, 0) at 0) with
/// their trilinear weights, leaving out weights of 1e-6 or less. Nothing when a coordinate is
/// not finite or lies beyond ±1e9 voxels.
pub fn trilinear_corners(v: [f64; 3]) -> impl Iterator<Item = ([i64; 3], f64)> {
    let ok = v.iter().all(|c| c.is_finite() && c.abs() < 1e9);
    let base = if ok {
        v.map(|c| c.floor() as i64)
    } else {
        [0; 3]
    };
    let frac: [f64; 3] = std::array::from_fn(|a| v[a] - base[a] as f64);
    (0..if ok { 8usize } else { 0 }).filter_map(move |k| {
        let off = [k & 1, (k >> 1) & 1, (k >> 2) & 1];
        let w: f64 = (0..3)
            .map(|a| if off[a] == 1 { frac[a] } else { 1.0 - frac[a] })
            .product();
        (w > 1e-6).then(|| (std::array::from_fn(|a| base[a] + off[a] as i64), w))
    })
}

fn sample_at(grid: &Grid, mask: &BoneMask, field: &[f32], p: [f32; 3]) -> f32 {
    let d = grid.dims;
    let v: [f64; 3] =
        std::array::from_fn(|a| (p[a] as f64 - grid.origin_mm[a]) / grid.voxel_size_mm[a]);
    let (mut acc, mut wsum) = (0f64, 0f64);
    for ([x, y, z], w) in trilinear_corners(v) {
        if mask.get_or_false(x, y, z) {
            acc += w * field[d.index(x as usize, y as usize, z as usize)] as f64;
            wsum += w;
        }
    }
    if wsum > 0.0 {
        return (acc / wsum) as f32;
    }
    nearest_bone_mean(grid, mask, field, v)
}

/// Mean field over the bone voxels nearest (in mm) to voxel coordinate `v`, searched in growing
/// cubes up to [`SEARCH_RADIUS_VOXELS`]; 0 if there is none.
fn nearest_bone_mean(grid: &Grid, mask: &BoneMask, field: &[f32], v: [f64; 3]) -> f32 {
    if v.iter().any(|c| !c.is_finite() || c.abs() > 1e15) {
        return 0.0;
    }
    let centre = v.map(|c| c.round() as i64);
    let d = grid.dims;
    let dist2 = |x: i64, y: i64, z: i64| {
        let q = [x, y, z];
        (0..3)
            .map(|a| ((q[a] as f64 - v[a]) * grid.voxel_size_mm[a]).powi(2))
            .sum::<f64>()
    };
    // First shell (Chebyshev radius) holding bone.
    let found = (1..=SEARCH_RADIUS_VOXELS).find(|&r| {
        cube(centre, r).any(|(x, y, z)| {
            let shell = (x - centre[0])
                .abs()
                .max((y - centre[1]).abs())
                .max((z - centre[2]).abs())
                == r;
            shell && mask.get_or_false(x, y, z)
        })
    });
    let Some(r) = found else {
        return 0.0;
    };
    // A nearer (Euclidean) voxel can sit in a shell up to √3 r out (for anisotropic voxels
    // the extra shells are bounded by the search radius).
    let reach = ((r as f64 * 3f64.sqrt()).ceil() as i64).min(SEARCH_RADIUS_VOXELS);
    let mut best = f64::INFINITY;
    let (mut acc, mut n) = (0f64, 0u32);
    for (x, y, z) in cube(centre, reach) {
        if !mask.get_or_false(x, y, z) {
            continue;
        }
        let d2 = dist2(x, y, z);
        let val = field[d.index(x as usize, y as usize, z as usize)] as f64;
        if d2 < best * (1.0 - 1e-9) {
            best = d2;
            acc = val;
            n = 1;
        } else if d2 <= best * (1.0 + 1e-9) {
            acc += val;
            n += 1;
        }
    }
    if n == 0 { 0.0 } else { (acc / n as f64) as f32 }
}

fn cube(c: [i64; 3], r: i64) -> impl Iterator<Item = (i64, i64, i64)> {
    (c[2] - r..=c[2] + r).flat_map(move |z| {
        (c[1] - r..=c[1] + r).flat_map(move |y| (c[0] - r..=c[0] + r).map(move |x| (x, y, z)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{ExtractParams, extract_surface};
    use crate::volume::Dims;

    fn block_mask() -> BoneMask {
        let grid = Grid {
            dims: Dims::new(9, 8, 7),
            voxel_size_mm: [0.5, 0.25, 0.75],
            origin_mm: [1.0, -2.0, 3.0],
        };
        BoneMask::from_fn(grid, |x, y, z| {
            (2..7).contains(&x) && (1..6).contains(&y) && (2..5).contains(&z) && x + y != 8
        })
    }

    /// Field = linear index; on a binary full-resolution surface every vertex must get exactly
    /// (f32 equality) the value of a bone voxel within one voxel of it along one axis.
    #[test]
    fn binary_surface_vertices_take_their_bone_voxel_value() {
        let mask = block_mask();
        let field: Vec<f32> = (0..mask.voxels.len())
            .map(|i| if mask.voxels[i] { i as f32 } else { 0.0 })
            .collect();
        let mesh = extract_surface(&mask, &ExtractParams::default());
        let vals = try_sample_voxel_field(&mesh, &mask.grid, &mask, &field, "index").unwrap();
        assert_eq!(vals.len(), mesh.vertex_count());
        let g = mask.grid;
        for (p, &val) in mesh.positions.iter().zip(&vals) {
            assert!(val > 0.0 && val.fract() == 0.0, "{val}");
            let [x, y, z] = g.dims.coords(val as usize);
            assert!(mask.get(x, y, z));
            let c = g.world_from_voxel(x as f64, y as f64, z as f64);
            let dist: f64 = (0..3)
                .map(|a| ((p[a] as f64 - c[a]) / g.voxel_size_mm[a]).abs())
                .sum();
            assert!(
                dist <= 0.5 + 1e-4,
                "vertex {p:?} is {dist} voxels from its bone voxel"
            );
        }
    }

    /// On a smoothed coarse mesh of a constant field every vertex samples the constant
    /// (tolerance 1e-6: a weighted mean of equal values).
    #[test]
    fn smoothed_coarse_surface_samples_a_constant_field_exactly() {
        let grid = Grid {
            dims: Dims::new(14, 12, 13),
            voxel_size_mm: [0.5, 0.25, 0.75],
            origin_mm: [1.0, -2.0, 3.0],
        };
        let mask = BoneMask::from_fn(grid, |x, y, z| {
            (2..12).contains(&x) && (1..10).contains(&y) && (3..11).contains(&z) && x + y != 8
        });
        let field: Vec<f32> = mask
            .voxels
            .iter()
            .map(|&b| if b { 3.5 } else { 0.0 })
            .collect();
        let params = ExtractParams {
            smoothing_sigma_voxels: 1.0,
            step: 2,
            ..ExtractParams::default()
        };
        let mut mesh = extract_surface(&mask, &params);
        assert!(mesh.vertex_count() > 0);
        mesh.add_voxel_field(&mask, &field, "sed_mpa").unwrap();
        for &v in mesh.scalar("sed_mpa").unwrap() {
            assert!((v - 3.5).abs() < 1e-6, "{v}");
        }
    }

    #[test]
    fn mismatched_field_is_an_error_naming_the_field() {
        let mask = block_mask();
        let mesh = extract_surface(&mask, &ExtractParams::default());
        let err =
            try_sample_voxel_field(&mesh, &mask.grid, &mask, &[0.0; 5], "sed_mpa").unwrap_err();
        assert!(err.to_string().contains("sed_mpa"), "{err}");
        let lenient = sample_voxel_field(&mesh, &mask.grid, &mask, &[0.0; 5], "sed_mpa");
        assert_eq!(lenient.len(), mesh.vertex_count());
        assert!(lenient.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn vertex_far_from_bone_gets_the_background_value() {
        let mask = block_mask();
        let field = vec![1.0f32; mask.voxels.len()];
        let mesh = SurfaceMesh {
            positions: vec![[1000.0, 1000.0, 1000.0]],
            normals: vec![[0.0, 0.0, 1.0]],
            indices: Vec::new(),
            scalars: Vec::new(),
        };
        let v = try_sample_voxel_field(&mesh, &mask.grid, &mask, &field, "f").unwrap();
        assert_eq!(v, vec![0.0]);
    }
}
