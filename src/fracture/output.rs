//! Files of a fracture run: the curves as CSV, a PNG plot with the curves overlaid, and VTK
//! files of the damage field. Every write is atomic.

use std::io;
use std::path::{Path, PathBuf};

use super::solver::FractureResult;
use crate::atomic::write_atomic;
use crate::plot::{LineChart, PlotError, Series};
use crate::volume::Grid;
use crate::volume::vtk::{CellField, CellValues, write_cell_fields};

/// Errors writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot draw {path}: {source}")]
    Plot { path: PathBuf, source: PlotError },
    #[error("damage field has {got} values but the model has {expected} elements")]
    FieldLength { got: usize, expected: usize },
}

/// The CSV header of [`write_curves_csv`].
pub const CURVE_COLUMNS: [&str; 10] = [
    "label",
    "point",
    "displacement_mm",
    "load_kn",
    "iterations",
    "converged",
    "damaged_elements",
    "max_damage",
    "strain_energy_mj",
    "dissipated_energy_mj",
];

/// Writes one row per curve point of every labelled run.
pub fn write_curves_csv(path: &Path, runs: &[(&str, &FractureResult)]) -> Result<(), OutputError> {
    write_atomic(path, |w| {
        writeln!(w, "{}", CURVE_COLUMNS.join(","))?;
        for (label, r) in runs {
            let label: String = label
                .chars()
                .filter(|c| !matches!(c, ',' | '"' | '\n' | '\r'))
                .collect();
            for (i, p) in r.curve.iter().enumerate() {
                writeln!(
                    w,
                    "{label},{i},{:.8},{:.6},{},{},{},{:.6},{:.6},{:.6}",
                    p.displacement_mm,
                    p.load_n / 1000.0,
                    p.iterations,
                    p.converged,
                    p.damaged_elements,
                    p.max_damage,
                    p.strain_energy_mj,
                    p.dissipated_energy_mj
                )?;
            }
        }
        Ok(())
    })
    .map_err(|source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Draws the load–displacement curves of the labelled runs in one chart.
pub fn write_curves_png(
    path: &Path,
    runs: &[(&str, &FractureResult)],
    title: &str,
) -> Result<(), OutputError> {
    let palette = [
        [31, 119, 180],
        [214, 39, 40],
        [44, 160, 44],
        [148, 103, 189],
        [255, 127, 14],
    ];
    // Vertebrae in kN and J; a trabecular cube, whose peak is tens of newtons, in N and mJ.
    let highest = runs.iter().map(|(_, r)| r.peak_load_n).fold(0.0, f64::max);
    let (load_unit, load_scale, energy_unit, energy_scale) = if highest >= 1000.0 {
        ("kN", 1e-3, "J", 1e-3)
    } else {
        ("N", 1.0, "mJ", 1.0)
    };
    let series = runs
        .iter()
        .enumerate()
        .map(|(i, (label, r))| {
            Series::new(
                format!(
                    "{label}: peak {:.3} {load_unit}, {:.3} {energy_unit} to peak, {:.3} \
                     {energy_unit} to end",
                    r.peak_load_n * load_scale,
                    r.energy_to_peak_mj * energy_scale,
                    r.energy_to_end_mj * energy_scale
                ),
                palette[i % palette.len()],
                r.curve
                    .iter()
                    .map(|p| (p.displacement_mm, p.load_n * load_scale))
                    .collect(),
            )
        })
        .collect();
    let chart = LineChart {
        title: title.to_string(),
        x_label: "plate displacement (mm)".into(),
        y_label: format!("load ({load_unit})"),
        series,
        bands: Vec::new(),
        zero_line: false,
    };
    chart
        .write_png(path, 1000, 650)
        .map_err(|source| OutputError::Plot {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes a damage field (element order, `element_voxel` giving each element's grid index) as
/// a legacy VTK structured-points file with cell data `damage` (0 outside the structure) and
/// `bone` (1 for elements, 0 elsewhere). Opens in ParaView.
pub fn write_damage_vtk(
    path: &Path,
    grid: &Grid,
    element_voxel: &[usize],
    damage: &[f32],
    title: &str,
) -> Result<(), OutputError> {
    if damage.len() != element_voxel.len() {
        return Err(OutputError::FieldLength {
            got: damage.len(),
            expected: element_voxel.len(),
        });
    }
    let d = grid.dims;
    let mut field = vec![0.0f32; d.len()];
    let mut bone = vec![0i32; d.len()];
    for (&v, &x) in element_voxel.iter().zip(damage) {
        field[v] = x;
        bone[v] = 1;
    }
    write_cell_fields(
        path,
        grid,
        title,
        &[
            CellField {
                name: "damage",
                values: CellValues::Float(&field),
            },
            CellField {
                name: "bone",
                values: CellValues::Int(&bone),
            },
        ],
    )
    .map_err(|source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    })
}
