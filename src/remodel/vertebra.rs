//! The macroscale vertebra: a voxel grid of elements, each with a region label and two bone
//! compartments (cortical and trabecular; see [`super::law`]).
//!
//! Built-in model: a parametric lumbar (L3-like) vertebral body (see [`VertebraParams`]).
//! From CT: see [`super::ct`].
//!
//! The cortical shell (about 0.4 mm) and the bony endplates (about 0.6 mm) are thinner than a
//! 1 mm element. So an element near the surface holds both kinds of bone. A cortical share s
//! of its volume is compact bone at the cortical BMD; the rest is trabecular bone at the
//! trabecular BMD, as clinical QCT would see it through partial volume. The shares come from
//! the depth of the element below the periosteal surface (in the transverse plane) and below
//! the endplate surface (along z).

use serde::{Deserialize, Serialize};

use super::density::DensityRelations;
use super::law::COMPARTMENTS;
use crate::volume::{Dims, Grid};

/// What an element of the vertebra is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Region {
    /// The trabecular centrum.
    Trabecular,
    /// Elements holding part of the cortical shell.
    Cortical,
    /// Elements holding part of a bony endplate (superior or inferior).
    Endplate,
}

impl Region {
    pub const ALL: [Region; 3] = [Region::Trabecular, Region::Cortical, Region::Endplate];

    pub fn name(self) -> &'static str {
        match self {
            Region::Trabecular => "trabecular",
            Region::Cortical => "cortical",
            Region::Endplate => "endplate",
        }
    }
}

/// The macroscale model of one vertebral body.
#[derive(Clone, Debug)]
pub struct Vertebra {
    /// The element grid (z = cranio-caudal axis, y = antero-posterior with +y anterior,
    /// x = lateral).
    pub grid: Grid,
    /// Grid index of each element.
    pub voxel: Vec<usize>,
    /// Region of each element.
    pub region: Vec<Region>,
    /// Cortical share of each element's volume, in [0, 1].
    pub cortical_share: Vec<f64>,
    /// Initial bone volume fraction of each element's compartments ([cortical, trabecular]).
    pub initial_volume_fraction: Vec<[f64; COMPARTMENTS]>,
    /// Where the model came from, for reports.
    pub source: String,
}

/// Errors when building a vertebra model.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum VertebraError {
    #[error("vertebra parameter {name} must lie in [{min}, {max}], got {value}")]
    OutOfRange {
        name: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Parameters of the built-in lumbar vertebral body.
///
/// Defaults, for an adult L3:
/// - **Endplate size and body height.** 47 mm wide (lateral), 35 mm deep (antero-posterior)
///   and 28 mm high. These are in the ranges Panjabi et al. (1992, Spine 17:299, *Human lumbar
///   vertebrae: quantitative three-dimensional anatomy*) and Zhou et al. (2000, Eur Spine J
///   9:242) report for L3.
/// - **Shape.** The cross-section is elliptical, with a shallow concavity of the posterior wall
///   towards the vertebral canal (12 % of the depth), and the body is waisted by 6 % at
///   mid-height.
/// - **Trabecular BMD, 150 mg/cm³.** The L1–L3 trabecular QCT BMD of men in Budoff et al. (2012,
///   Acad Radiol 19:179) is 151 mg/cm³ and of women 142 mg/cm³.
/// - **Cortical tissue BMD, 1000 mg/cm³.** Our choice for the compact bone of the porous
///   shell (v_b = 0.83 with the density relations). No vertebral measurement exists at
///   this resolution. For comparison, HR-pQCT cortical vBMD at the distal radius and tibia
///   of adults is about 850–1000 mg HA/cm³ (Boutroy et al. 2005, J Clin Endocrinol Metab
///   90:6508).
/// - **Shell and endplate thicknesses.** Micro-CT gives 0.38 mm mean for the shell (Eswaran
///   et al. 2006, J Bone Miner Res 21:307) and 0.5–0.8 mm for the endplates (Palepu et al.
///   2019). The defaults here are thicker: they are effective thicknesses **fitted** to the
///   published whole-vertebra endpoint. See `calibration` and the README.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct VertebraParams {
    pub width_mm: f64,
    pub depth_mm: f64,
    pub height_mm: f64,
    pub shell_thickness_mm: f64,
    pub endplate_thickness_mm: f64,
    pub trabecular_bmd_mg_cm3: f64,
    pub cortical_bmd_mg_cm3: f64,
    pub voxel_size_mm: f64,
}

/// Fitted effective shell thickness (mm); the endplates are this times 0.6/0.38, the ratio
/// of the micro-CT means.
pub const DEFAULT_SHELL_THICKNESS_MM: f64 = 1.455;

impl Default for VertebraParams {
    fn default() -> Self {
        Self {
            width_mm: 47.0,
            depth_mm: 35.0,
            height_mm: 28.0,
            shell_thickness_mm: DEFAULT_SHELL_THICKNESS_MM,
            endplate_thickness_mm: DEFAULT_SHELL_THICKNESS_MM * 0.6 / 0.38,
            trabecular_bmd_mg_cm3: 150.0,
            cortical_bmd_mg_cm3: 1000.0,
            voxel_size_mm: 1.0,
        }
    }
}

impl VertebraParams {
    /// A small body (24 × 18 × 12 mm, about 3 800 elements at 1 mm) with the default
    /// materials, for quick runs and tests.
    pub fn small() -> Self {
        Self {
            width_mm: 24.0,
            depth_mm: 18.0,
            height_mm: 12.0,
            ..Self::default()
        }
    }

    /// Checks every parameter against a plausible range.
    pub fn validate(&self) -> Result<(), VertebraError> {
        let checks = [
            ("width_mm", self.width_mm, 20.0, 90.0),
            ("depth_mm", self.depth_mm, 15.0, 70.0),
            ("height_mm", self.height_mm, 10.0, 60.0),
            ("shell_thickness_mm", self.shell_thickness_mm, 0.0, 5.0),
            (
                "endplate_thickness_mm",
                self.endplate_thickness_mm,
                0.0,
                5.0,
            ),
            (
                "trabecular_bmd_mg_cm3",
                self.trabecular_bmd_mg_cm3,
                10.0,
                500.0,
            ),
            (
                "cortical_bmd_mg_cm3",
                self.cortical_bmd_mg_cm3,
                200.0,
                1200.0,
            ),
            ("voxel_size_mm", self.voxel_size_mm, 0.25, 3.0),
        ];
        for (name, value, min, max) in checks {
            if !(value.is_finite() && value >= min && value <= max) {
                return Err(VertebraError::OutOfRange {
                    name,
                    value,
                    min,
                    max,
                });
            }
        }
        if self.cortical_bmd_mg_cm3 <= self.trabecular_bmd_mg_cm3 {
            return Err(VertebraError::Invalid(format!(
                "cortical BMD ({} mg/cm³) must exceed trabecular BMD ({} mg/cm³)",
                self.cortical_bmd_mg_cm3, self.trabecular_bmd_mg_cm3
            )));
        }
        Ok(())
    }
}

impl Vertebra {
    /// The built-in parametric vertebral body.
    pub fn builtin(
        params: &VertebraParams,
        density: &DensityRelations,
    ) -> Result<Self, VertebraError> {
        params.validate()?;
        density.validate().map_err(VertebraError::Invalid)?;
        let h = params.voxel_size_mm;
        let margin = 1;
        let nx = (params.width_mm / h).ceil() as usize + 2 * margin;
        let ny = (params.depth_mm / h).ceil() as usize + 2 * margin;
        let nz = (params.height_mm / h).round().max(3.0) as usize;
        let dims = Dims::new(nx, ny, nz);
        let mut grid = Grid::isotropic(dims, h);
        // Centred on the body: origin_mm is the centre of voxel (0, 0, 0).
        grid.origin_mm = [
            -(nx as f64 - 1.0) * h / 2.0,
            -(ny as f64 - 1.0) * h / 2.0,
            -(nz as f64 - 1.0) * h / 2.0,
        ];
        let waist = 0.06;
        let notch = 0.12;
        let inside = |x: usize, y: usize, z: usize| {
            let px = (x as f64 + 0.5) * h - nx as f64 * h / 2.0;
            let py = (y as f64 + 0.5) * h - ny as f64 * h / 2.0;
            let zeta = ((z as f64 + 0.5) * h - nz as f64 * h / 2.0) / (nz as f64 * h / 2.0);
            let s = 1.0 - waist * (1.0 - zeta * zeta);
            let a = s * params.width_mm / 2.0;
            let b = s * params.depth_mm / 2.0;
            if (px / a).powi(2) + (py / b).powi(2) > 1.0 {
                return false;
            }
            // Posterior (−y) wall concave towards the canal.
            let half_width = 0.45 * a;
            let dent = notch * s * params.depth_mm * (1.0 - (px / half_width).powi(2)).max(0.0);
            py >= -b + dent
        };
        let mut occupied = vec![false; dims.len()];
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    occupied[dims.index(x, y, z)] = inside(x, y, z);
                }
            }
        }
        let depth_xy = in_plane_depth(dims, &occupied);
        let v_cort = density.volume_fraction(params.cortical_bmd_mg_cm3);
        let v_trab = density.volume_fraction(params.trabecular_bmd_mg_cm3);
        let mut model = Vertebra {
            grid,
            voxel: Vec::new(),
            region: Vec::new(),
            cortical_share: Vec::new(),
            initial_volume_fraction: Vec::new(),
            source: "built-in L3 vertebral body".into(),
        };
        for i in 0..dims.len() {
            if !occupied[i] {
                continue;
            }
            let [_, _, z] = dims.coords(i);
            let d_z = z.min(nz - 1 - z) as f64;
            let share_e = ((params.endplate_thickness_mm - d_z * h) / h).clamp(0.0, 1.0);
            let share_s =
                ((params.shell_thickness_mm - depth_xy[i] as f64 * h) / h).clamp(0.0, 1.0);
            let share = share_s + share_e - share_s * share_e;
            let region = if share_e > 0.0 {
                Region::Endplate
            } else if share_s > 0.0 {
                Region::Cortical
            } else {
                Region::Trabecular
            };
            model.voxel.push(i);
            model.region.push(region);
            model.cortical_share.push(share);
            model.initial_volume_fraction.push([
                if share > 0.0 { v_cort } else { 0.0 },
                if share < 1.0 { v_trab } else { 0.0 },
            ]);
        }
        if model.voxel.is_empty() {
            return Err(VertebraError::Invalid(
                "the vertebral body has no elements".into(),
            ));
        }
        Ok(model)
    }

    pub fn element_count(&self) -> usize {
        self.voxel.len()
    }

    /// The elements in grid order (by voxel index, z slowest), the order in which a voxel FE
    /// model of the vertebra's grid numbers them.
    pub fn elements_in_grid_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.element_count()).collect();
        order.sort_by_key(|&e| self.voxel[e]);
        order
    }

    /// Element BMD (mg/cm³) for compartment volume fractions `v`.
    pub fn element_bmd_mg_cm3(
        &self,
        element: usize,
        v: [f64; COMPARTMENTS],
        density: &DensityRelations,
    ) -> f64 {
        let s = self.cortical_share[element];
        s * density.bmd_mg_cm3(v[0]) + (1.0 - s) * density.bmd_mg_cm3(v[1])
    }

    /// Element Young's modulus (MPa): the compartments in parallel (Voigt), each with the
    /// Morgan et al. (2003) power law. Compartments lie along the loading axis, as the shell
    /// does.
    pub fn element_modulus_mpa(
        &self,
        element: usize,
        v: [f64; COMPARTMENTS],
        density: &DensityRelations,
    ) -> f64 {
        let s = self.cortical_share[element];
        s * density.modulus_mpa(v[0]) + (1.0 - s) * density.modulus_mpa(v[1])
    }

    /// Number of elements per region, in [`Region::ALL`] order.
    pub fn region_counts(&self) -> [usize; 3] {
        let mut c = [0; 3];
        for r in &self.region {
            c[Region::ALL.iter().position(|x| x == r).unwrap_or(0)] += 1;
        }
        c
    }
}

/// Depth of each occupied voxel below the nearest empty voxel in its own z slice, in voxel
/// layers (0 = on the surface), by a 4-connected breadth-first search per slice. Voxels on
/// the grid border count as surface.
pub fn in_plane_depth(dims: Dims, occupied: &[bool]) -> Vec<u32> {
    let (nx, ny, nz) = (dims.nx, dims.ny, dims.nz);
    let mut depth = vec![u32::MAX; dims.len()];
    let mut queue = std::collections::VecDeque::new();
    for z in 0..nz {
        queue.clear();
        for y in 0..ny {
            for x in 0..nx {
                let i = dims.index(x, y, z);
                if !occupied[i] {
                    continue;
                }
                let on_surface = x == 0
                    || y == 0
                    || x + 1 == nx
                    || y + 1 == ny
                    || !occupied[i - 1]
                    || !occupied[i + 1]
                    || !occupied[i - nx]
                    || !occupied[i + nx];
                if on_surface {
                    depth[i] = 0;
                    queue.push_back((x, y));
                }
            }
        }
        while let Some((x, y)) = queue.pop_front() {
            let d = depth[dims.index(x, y, z)];
            let mut visit = |xx: usize, yy: usize| {
                let j = dims.index(xx, yy, z);
                if occupied[j] && depth[j] == u32::MAX {
                    depth[j] = d + 1;
                    queue.push_back((xx, yy));
                }
            };
            if x > 0 {
                visit(x - 1, y);
            }
            if x + 1 < nx {
                visit(x + 1, y);
            }
            if y > 0 {
                visit(x, y - 1);
            }
            if y + 1 < ny {
                visit(x, y + 1);
            }
        }
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_l3_has_over_30000_elements_of_all_three_regions() {
        let v =
            Vertebra::builtin(&VertebraParams::default(), &DensityRelations::default()).unwrap();
        assert!(v.element_count() >= 30_000, "{}", v.element_count());
        let counts = v.region_counts();
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        // The body spans the grid in z so the endplates can be loaded.
        let dims = v.grid.dims;
        let top = v
            .voxel
            .iter()
            .filter(|&&i| dims.coords(i)[2] == dims.nz - 1)
            .count();
        assert!(top > 1000);
    }

    /// The trabecular centrum carries the stated BMD and the shell elements mix cortical
    /// and trabecular bone in proportion to the shell thickness.
    #[test]
    fn builtin_bmd_per_region_follows_the_parameters() {
        let d = DensityRelations::default();
        let p = VertebraParams::default();
        let v = Vertebra::builtin(&p, &d).unwrap();
        for e in 0..v.element_count() {
            let bmd = v.element_bmd_mg_cm3(e, v.initial_volume_fraction[e], &d);
            match v.region[e] {
                Region::Trabecular => assert!((bmd - p.trabecular_bmd_mg_cm3).abs() < 1e-9),
                Region::Cortical | Region::Endplate => {
                    let s = v.cortical_share[e];
                    let expect = s * p.cortical_bmd_mg_cm3 + (1.0 - s) * p.trabecular_bmd_mg_cm3;
                    assert!(s > 0.0 && (bmd - expect).abs() < 1e-9);
                }
            }
        }
    }

    #[test]
    fn builtin_rejects_nan_and_out_of_range_parameters() {
        let d = DensityRelations::default();
        let bad = VertebraParams {
            width_mm: f64::NAN,
            ..Default::default()
        };
        assert!(matches!(
            Vertebra::builtin(&bad, &d),
            Err(VertebraError::OutOfRange {
                name: "width_mm",
                ..
            })
        ));
        let inverted = VertebraParams {
            cortical_bmd_mg_cm3: 300.0,
            trabecular_bmd_mg_cm3: 400.0,
            ..Default::default()
        };
        assert!(matches!(
            Vertebra::builtin(&inverted, &d),
            Err(VertebraError::Invalid(_))
        ));
    }

    #[test]
    fn in_plane_depth_of_a_square_counts_layers_from_the_edge() {
        let dims = Dims::new(7, 7, 1);
        let occ: Vec<bool> = (0..49)
            .map(|i| {
                let (x, y) = (i % 7, i / 7);
                (1..6).contains(&x) && (1..6).contains(&y)
            })
            .collect();
        let d = in_plane_depth(dims, &occ);
        assert_eq!(d[dims.index(1, 1, 0)], 0);
        assert_eq!(d[dims.index(2, 3, 0)], 1);
        assert_eq!(d[dims.index(3, 3, 0)], 2);
    }
}
