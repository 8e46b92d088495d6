//! The voxel grid: dimensions, spacing, origin, and the index convention shared by every module.
//!
//! Convention (design §4): x varies fastest, `index = x + nx * (y + ny * z)`. Indices are `usize`
//! (64-bit on every supported target), so grids of 1024³ and larger are addressable; no index is
//! ever narrowed to 32 bits here.

use serde::{Deserialize, Serialize};

/// Number of voxels along x, y and z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dims {
    pub nx: usize,
    pub ny: usize,
    pub nz: usize,
}

impl Dims {
    pub const fn new(nx: usize, ny: usize, nz: usize) -> Self {
        Self { nx, ny, nz }
    }

    /// Total voxel count, or `None` if it overflows `usize`.
    pub fn checked_len(&self) -> Option<usize> {
        self.nx.checked_mul(self.ny)?.checked_mul(self.nz)
    }

    /// Total voxel count. Panics only if the product overflows `usize`, which readers rule out
    /// beforehand with [`Dims::checked_len`].
    pub fn len(&self) -> usize {
        self.checked_len().expect("grid dimensions overflow usize")
    }

    pub fn is_empty(&self) -> bool {
        self.nx == 0 || self.ny == 0 || self.nz == 0
    }

    /// Linear index of voxel (x, y, z), x fastest.
    #[inline(always)]
    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        x + self.nx * (y + self.ny * z)
    }

    /// Inverse of [`Dims::index`].
    #[inline(always)]
    pub fn coords(&self, index: usize) -> [usize; 3] {
        let x = index % self.nx;
        let yz = index / self.nx;
        [x, yz % self.ny, yz / self.ny]
    }

    pub fn as_array(&self) -> [usize; 3] {
        [self.nx, self.ny, self.nz]
    }

    pub fn contains(&self, x: i64, y: i64, z: i64) -> bool {
        x >= 0
            && y >= 0
            && z >= 0
            && (x as usize) < self.nx
            && (y as usize) < self.ny
            && (z as usize) < self.nz
    }
}

impl From<[usize; 3]> for Dims {
    fn from(d: [usize; 3]) -> Self {
        Self::new(d[0], d[1], d[2])
    }
}

/// Geometry of a grid: dimensions, voxel size in mm per axis (anisotropic allowed) and the
/// world position (mm) of the centre of voxel (0, 0, 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub dims: Dims,
    pub voxel_size_mm: [f64; 3],
    pub origin_mm: [f64; 3],
}

impl Grid {
    /// An isotropic grid at the origin.
    pub fn isotropic(dims: Dims, voxel_size_mm: f64) -> Self {
        Self {
            dims,
            voxel_size_mm: [voxel_size_mm; 3],
            origin_mm: [0.0; 3],
        }
    }

    /// Volume of one voxel in mm³.
    pub fn voxel_volume_mm3(&self) -> f64 {
        self.voxel_size_mm.iter().product()
    }

    /// Physical extent (mm) along each axis.
    pub fn extent_mm(&self) -> [f64; 3] {
        let d = self.dims.as_array();
        [
            d[0] as f64 * self.voxel_size_mm[0],
            d[1] as f64 * self.voxel_size_mm[1],
            d[2] as f64 * self.voxel_size_mm[2],
        ]
    }

    /// True when all three voxel sizes agree to 1e-9 relative.
    pub fn is_isotropic(&self) -> bool {
        let [a, b, c] = self.voxel_size_mm;
        ((a - b).abs() <= 1e-9 * a) && ((a - c).abs() <= 1e-9 * a)
    }

    /// World position (mm) of the centre of voxel (x, y, z).
    pub fn world_from_voxel(&self, x: f64, y: f64, z: f64) -> [f64; 3] {
        [
            self.origin_mm[0] + x * self.voxel_size_mm[0],
            self.origin_mm[1] + y * self.voxel_size_mm[1],
            self.origin_mm[2] + z * self.voxel_size_mm[2],
        ]
    }
}

/// Voxel values in one of the supported sample types.
#[derive(Clone, Debug, PartialEq)]
pub enum VoxelData {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

/// The sample type of a [`VoxelData`], as named in sidecar files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Uint8,
    Uint16,
    Float32,
}

impl DType {
    pub fn bytes_per_voxel(self) -> usize {
        match self {
            DType::Uint8 => 1,
            DType::Uint16 => 2,
            DType::Float32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::Uint8 => "uint8",
            DType::Uint16 => "uint16",
            DType::Float32 => "float32",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "uint8" | "u8" => Some(DType::Uint8),
            "uint16" | "u16" => Some(DType::Uint16),
            "float32" | "f32" => Some(DType::Float32),
            _ => None,
        }
    }
}

impl VoxelData {
    pub fn len(&self) -> usize {
        match self {
            VoxelData::U8(v) => v.len(),
            VoxelData::U16(v) => v.len(),
            VoxelData::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            VoxelData::U8(_) => DType::Uint8,
            VoxelData::U16(_) => DType::Uint16,
            VoxelData::F32(_) => DType::Float32,
        }
    }

    /// Value at a linear index, widened to f64.
    #[inline]
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            VoxelData::U8(v) => v[i] as f64,
            VoxelData::U16(v) => v[i] as f64,
            VoxelData::F32(v) => v[i] as f64,
        }
    }

    /// All values widened to f32 (used by smoothing and thresholding).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            VoxelData::U8(v) => v.iter().map(|&a| a as f32).collect(),
            VoxelData::U16(v) => v.iter().map(|&a| a as f32).collect(),
            VoxelData::F32(v) => v.clone(),
        }
    }
}

/// A grey-value (or any scalar) volume.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub grid: Grid,
    pub data: VoxelData,
}

impl Volume {
    /// Builds a volume, checking that the data length matches the dimensions.
    pub fn new(grid: Grid, data: VoxelData) -> Option<Self> {
        (grid.dims.checked_len() == Some(data.len())).then_some(Self { grid, data })
    }

    pub fn dims(&self) -> Dims {
        self.grid.dims
    }

    /// Minimum and maximum finite value (None for an empty or all-NaN volume).
    pub fn value_range(&self) -> Option<(f64, f64)> {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for i in 0..self.data.len() {
            let v = self.data.get_f64(i);
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        (lo <= hi).then_some((lo, hi))
    }
}

/// A segmented volume: `true` where there is bone.
#[derive(Clone, Debug, PartialEq)]
pub struct BoneMask {
    pub grid: Grid,
    pub voxels: Vec<bool>,
}

impl BoneMask {
    /// Builds a mask, checking that the voxel count matches the dimensions.
    pub fn new(grid: Grid, voxels: Vec<bool>) -> Option<Self> {
        (grid.dims.checked_len() == Some(voxels.len())).then_some(Self { grid, voxels })
    }

    /// A mask from a predicate on voxel coordinates.
    pub fn from_fn(grid: Grid, mut f: impl FnMut(usize, usize, usize) -> bool) -> Self {
        let d = grid.dims;
        let mut voxels = Vec::with_capacity(d.len());
        for z in 0..d.nz {
            for y in 0..d.ny {
                for x in 0..d.nx {
                    voxels.push(f(x, y, z));
                }
            }
        }
        Self { grid, voxels }
    }

    pub fn dims(&self) -> Dims {
        self.grid.dims
    }

    #[inline(always)]
    pub fn get(&self, x: usize, y: usize, z: usize) -> bool {
        self.voxels[self.grid.dims.index(x, y, z)]
    }

    /// Bone voxel lookup that treats everything outside the grid as background.
    #[inline(always)]
    pub fn get_or_false(&self, x: i64, y: i64, z: i64) -> bool {
        self.grid.dims.contains(x, y, z) && self.get(x as usize, y as usize, z as usize)
    }

    pub fn count(&self) -> usize {
        self.voxels.iter().filter(|&&b| b).count()
    }

    /// Bone volume fraction of the whole grid.
    pub fn bv_tv(&self) -> f64 {
        if self.voxels.is_empty() {
            0.0
        } else {
            self.count() as f64 / self.voxels.len() as f64
        }
    }

    /// The mask as a u8 volume (bone = 255, background = 0), e.g. for writing.
    pub fn to_volume(&self) -> Volume {
        Volume {
            grid: self.grid,
            data: VoxelData::U8(
                self.voxels
                    .iter()
                    .map(|&b| if b { 255 } else { 0 })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_coords_round_trip() {
        let d = Dims::new(7, 5, 3);
        for i in 0..d.len() {
            let [x, y, z] = d.coords(i);
            assert_eq!(d.index(x, y, z), i);
        }
    }

    #[test]
    fn grids_of_1024_cubed_and_beyond_are_addressable() {
        let d = Dims::new(2048, 2048, 2048);
        assert_eq!(d.checked_len(), Some(1usize << 33));
        let last = d.index(2047, 2047, 2047);
        assert_eq!(last, (1usize << 33) - 1);
        assert_eq!(d.coords(last), [2047, 2047, 2047]);
        assert_eq!(Dims::new(usize::MAX, 2, 1).checked_len(), None);
    }
}
