//! Files a remodeling run writes: the daily series as CSV, a PNG plot of BMD change against
//! days with the phases shaded, and VTK files of the density field. Every write is atomic.

use std::io;
use std::path::{Path, PathBuf};

use super::scenario::Scenario;
use super::simulation::DayRecord;
use super::vertebra::{Region, Vertebra};
use crate::atomic::write_atomic;
use crate::plot::{Band, LineChart, PlotError, Series};
use crate::volume::vtk::{CellField, CellValues, write_cell_fields};

/// Errors writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot draw {path}: {source}")]
    Plot { path: PathBuf, source: PlotError },
    #[error("field has {got} values but the vertebra has {expected} elements")]
    FieldLength { got: usize, expected: usize },
}

/// The CSV header, in the order of [`write_series_csv`]'s columns.
pub const SERIES_COLUMNS: [&str; 11] = [
    "day",
    "phase",
    "bmd_trabecular_pct",
    "bmd_cortical_pct",
    "bmd_endplate_pct",
    "bmd_whole_pct",
    "bmd_trabecular_mg_cm3",
    "bmd_whole_mg_cm3",
    "bv_tv_trabecular",
    "mean_stimulus",
    "fe_solves",
];

pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes one row per record.
pub fn write_series_csv(path: &Path, series: &[DayRecord]) -> Result<(), OutputError> {
    write_atomic(path, |w| {
        writeln!(w, "{}", SERIES_COLUMNS.join(","))?;
        for r in series {
            writeln!(
                w,
                "{},{},{:.6},{:.6},{:.6},{:.6},{:.4},{:.4},{:.6},{:.6},{}",
                r.day,
                csv_field(&r.phase),
                r.bmd_trabecular_pct,
                r.bmd_cortical_pct,
                r.bmd_endplate_pct,
                r.bmd_whole_pct,
                r.bmd_trabecular_mg_cm3,
                r.bmd_whole_mg_cm3,
                r.bv_tv_trabecular,
                r.mean_stimulus,
                r.fe_solves
            )?;
        }
        Ok(())
    })
    .map_err(|source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One shaded band per phase of `scenario`, named after it, over its days.
pub fn phase_bands(scenario: &Scenario) -> Vec<Band> {
    let palette = [
        [190, 190, 190],
        [235, 150, 150],
        [150, 210, 150],
        [150, 175, 230],
        [230, 200, 130],
    ];
    let mut bands = Vec::new();
    let mut start = 0u32;
    for (i, p) in scenario.phases.iter().enumerate() {
        let end = start + p.days;
        bands.push(Band::new(
            start as f64,
            end as f64,
            p.name.clone(),
            palette[i % palette.len()],
        ));
        start = end;
    }
    bands
}

/// Draws trabecular, cortical and whole-vertebra BMD change against days, phases shaded.
pub fn write_bmd_plot(
    path: &Path,
    scenario: &Scenario,
    series: &[DayRecord],
) -> Result<(), OutputError> {
    let pts = |f: fn(&DayRecord) -> f64| -> Vec<(f64, f64)> {
        series.iter().map(|r| (r.day as f64, f(r))).collect()
    };
    let chart = LineChart {
        title: format!("{}: vertebral BMD change", scenario.name),
        x_label: "time (day)".into(),
        y_label: "BMD change (%)".into(),
        series: vec![
            Series::new("trabecular", [31, 119, 180], pts(|r| r.bmd_trabecular_pct)),
            Series::new(
                "cortical shell",
                [255, 127, 14],
                pts(|r| r.bmd_cortical_pct),
            ),
            Series::new("endplates", [148, 103, 189], pts(|r| r.bmd_endplate_pct)).dashed(),
            Series::new("whole vertebra", [44, 160, 44], pts(|r| r.bmd_whole_pct)),
        ],
        bands: phase_bands(scenario),
        zero_line: true,
    };
    chart
        .write_png(path, 1100, 650)
        .map_err(|source| OutputError::Plot {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes the element fields of `vertebra` as a legacy VTK structured-points file with cell
/// data: BMD (mg/cm³), BMD change (%) and the region (0 trabecular, 1 cortical, 2 endplate,
/// −1 outside the body). Opens in ParaView.
pub fn write_density_vtk(
    path: &Path,
    vertebra: &Vertebra,
    bmd_mg_cm3: &[f32],
    bmd_change_pct: &[f32],
    title: &str,
) -> Result<(), OutputError> {
    let n = vertebra.element_count();
    for f in [bmd_mg_cm3, bmd_change_pct] {
        if f.len() != n {
            return Err(OutputError::FieldLength {
                got: f.len(),
                expected: n,
            });
        }
    }
    let g = &vertebra.grid;
    let d = g.dims;
    let mut bmd = vec![0.0f32; d.len()];
    let mut change = vec![0.0f32; d.len()];
    let mut region = vec![-1i32; d.len()];
    for (e, &i) in vertebra.voxel.iter().enumerate() {
        bmd[i] = bmd_mg_cm3[e];
        change[i] = bmd_change_pct[e];
        region[i] = match vertebra.region[e] {
            Region::Trabecular => 0,
            Region::Cortical => 1,
            Region::Endplate => 2,
        };
    }
    write_cell_fields(
        path,
        g,
        title,
        &[
            CellField {
                name: "bmd_mg_cm3",
                values: CellValues::Float(&bmd),
            },
            CellField {
                name: "bmd_change_pct",
                values: CellValues::Float(&change),
            },
            CellField {
                name: "region",
                values: CellValues::Int(&region),
            },
        ],
    )
    .map_err(|source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remodel::density::DensityRelations;
    use crate::remodel::vertebra::VertebraParams;

    fn small_vertebra() -> Vertebra {
        Vertebra::builtin(&VertebraParams::small(), &DensityRelations::default()).unwrap()
    }

    #[test]
    fn density_vtk_has_one_value_per_cell_and_the_region_labels() {
        let v = small_vertebra();
        let n = v.element_count();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("field.vtk");
        let bmd: Vec<f32> = (0..n).map(|e| e as f32).collect();
        write_density_vtk(&path, &v, &bmd, &vec![-1.5; n], "test").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let d = v.grid.dims;
        assert!(text.contains(&format!(
            "DIMENSIONS {} {} {}",
            d.nx + 1,
            d.ny + 1,
            d.nz + 1
        )));
        assert!(text.contains(&format!("CELL_DATA {}", d.len())));
        // Header lines + 3 arrays of d.len() 4-byte values.
        assert!(bytes.len() > 3 * 4 * d.len());
        let mismatch = write_density_vtk(&path, &v, &bmd[1..], &vec![0.0; n], "x");
        assert!(matches!(mismatch, Err(OutputError::FieldLength { .. })));
    }

    #[test]
    fn series_csv_has_the_header_and_one_row_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        let rec = DayRecord {
            day: 3,
            phase: "a,b".into(),
            bmd_trabecular_pct: -1.0,
            bmd_cortical_pct: -0.5,
            bmd_endplate_pct: -0.4,
            bmd_whole_pct: -0.7,
            bmd_trabecular_mg_cm3: 148.5,
            bmd_whole_mg_cm3: 300.0,
            bv_tv_trabecular: 0.12,
            mean_stimulus: 0.01,
            fe_solves: 2,
        };
        write_series_csv(&path, &[rec.clone(), rec]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], SERIES_COLUMNS.join(","));
        assert!(lines[1].starts_with("3,\"a,b\",-1.000000,"));
    }
}
