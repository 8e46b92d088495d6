//! The output folder of a multiscale run, and resuming from it.
//!
//! ```text
//! DIR/run.json                  the run's record: scenario (TOML), mapping, interval, the
//!                               microstructure's source, every checkpoint; rewritten
//!                               atomically after each checkpoint (the resume point)
//! DIR/checkpoints.csv           one row per checkpoint (day, BMD %, BV/TV target and reached,
//!                               morphometry, E_app, Dice, FE solves)
//! DIR/series.csv                the macroscale series, one row per day, written at the end
//! DIR/micro/dayDDDD.json/.raw   the structure at each checkpoint (uint8 0/255)
//! DIR/micro/dayDDDD.ply         its surface (mm), with the vertex field `formed`: 1 on bone
//!                               formed since day 0, 0 on original bone
//! DIR/report.md, *.png          written by [`super::report`] at the end
//! ```
//!
//! Every file is written atomically (temporary file, then rename), so an interrupted run
//! leaves the last complete checkpoint on disk.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Checkpoint, MultiscaleError};
use crate::atomic::write_bytes_atomic;
use crate::mesh::{ExtractParams, MeshError, extract_surface, write_mesh};
use crate::remodel::output::{OutputError, csv_field, write_series_csv};
use crate::remodel::simulation::DayRecord;
use crate::volume::{BoneMask, Grid, Volume, VolumeError, VoxelData, load_volume, save_volume};

/// Version of the `run.json` layout.
pub const RUN_FORMAT: u32 = 1;

/// Errors of the output folder.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    BadRecord { path: PathBuf, message: String },
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Mesh(#[from] MeshError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Run(#[from] MultiscaleError),
}

/// What `run.json` holds (the report's extra keys are ignored when it is read back).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: u32,
    pub scenario_name: String,
    /// The scenario as TOML, so a resumed run can check it is the same.
    pub scenario_toml: String,
    /// [`super::BvTvMapping::spec`].
    pub mapping: String,
    pub checkpoint_every_days: u32,
    pub coupled: bool,
    /// Where the original structure came from, in words.
    pub microstructure: String,
    pub dims: [usize; 3],
    pub voxel_size_mm: [f64; 3],
    pub checkpoints: Vec<Checkpoint>,
    /// Days of all checkpoints of the run, done or not.
    pub schedule: Vec<u32>,
    pub finished: bool,
}

/// The output folder.
#[derive(Clone, Debug)]
pub struct RunFolder {
    pub dir: PathBuf,
}

impl RunFolder {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn record_path(&self) -> PathBuf {
        self.dir.join("run.json")
    }

    /// The structure stored for `day`.
    pub fn volume_path(&self, day: u32) -> PathBuf {
        self.dir.join("micro").join(format!("day{day:04}.json"))
    }

    pub fn mesh_path(&self, day: u32) -> PathBuf {
        self.dir.join("micro").join(format!("day{day:04}.ply"))
    }

    /// True when the folder holds a run record.
    pub fn has_record(&self) -> bool {
        self.record_path().is_file()
    }

    fn create(&self, path: &Path) -> Result<(), StoreError> {
        std::fs::create_dir_all(path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the structure of `checkpoint` (volume and surface mesh).
    pub fn write_structure(
        &self,
        day: u32,
        mask: &BoneMask,
        original: &BoneMask,
    ) -> Result<(), StoreError> {
        self.create(&self.dir.join("micro"))?;
        save_volume(&mask.to_volume(), &self.volume_path(day))?;
        let mut mesh = extract_surface(mask, &ExtractParams::default());
        if !mesh.is_empty() {
            mesh.add_voxel_field(
                mask,
                &super::formed_field(original, mask),
                super::FORMED_FIELD,
            )?;
            write_mesh(&mesh, &self.mesh_path(day))?;
        }
        Ok(())
    }

    /// Writes `checkpoints.csv`, `series.csv` when `series` is given, and `run.json` (last:
    /// it is the resume point, written after the structure it names). The daily series is
    /// written once, when the run ends: a resume replays the macroscale run and never reads it.
    pub fn write_record(
        &self,
        record: &RunRecord,
        series: Option<&[DayRecord]>,
        extra: Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        self.create(&self.dir)?;
        write_checkpoints_csv(&self.dir.join("checkpoints.csv"), &record.checkpoints)?;
        if let Some(series) = series {
            write_series_csv(&self.dir.join("series.csv"), series)?;
        }
        let mut value = serde_json::to_value(record).expect("the record serialises");
        if let (Some(serde_json::Value::Object(extra)), serde_json::Value::Object(map)) =
            (extra, &mut value)
        {
            map.extend(extra);
        }
        let path = self.record_path();
        let text = serde_json::to_string_pretty(&value).expect("the record serialises");
        write_bytes_atomic(&path, text.as_bytes()).map_err(|source| StoreError::Io { path, source })
    }

    /// Reads `run.json`.
    pub fn read_record(&self) -> Result<RunRecord, StoreError> {
        let path = self.record_path();
        let text = std::fs::read_to_string(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let record: RunRecord = serde_json::from_str(&text).map_err(|e| StoreError::BadRecord {
            path: path.clone(),
            message: format!("not a run record: {e}"),
        })?;
        if record.format != RUN_FORMAT {
            return Err(StoreError::BadRecord {
                path,
                message: format!(
                    "format {} (this osteolab reads format {RUN_FORMAT})",
                    record.format
                ),
            });
        }
        if record.checkpoints.is_empty() || record.checkpoints[0].day != 0 {
            return Err(StoreError::BadRecord {
                path,
                message: "it holds no day-0 checkpoint".into(),
            });
        }
        Ok(record)
    }

    /// Reads the structure stored for `day` and checks it against the record's grid.
    pub fn read_structure(&self, day: u32, record: &RunRecord) -> Result<BoneMask, StoreError> {
        let path = self.volume_path(day);
        let volume = load_volume(&path)?;
        let dims = volume.dims().as_array();
        if dims != record.dims || volume.grid.voxel_size_mm != record.voxel_size_mm {
            return Err(StoreError::BadRecord {
                path,
                message: format!(
                    "{dims:?} voxels of {:?} mm, but the run record says {:?} of {:?} mm",
                    volume.grid.voxel_size_mm, record.dims, record.voxel_size_mm
                ),
            });
        }
        mask_of(&volume, &path)
    }
}

/// A stored 0/255 structure back to a mask; any other value is refused.
fn mask_of(volume: &Volume, path: &Path) -> Result<BoneMask, StoreError> {
    let VoxelData::U8(values) = &volume.data else {
        return Err(StoreError::BadRecord {
            path: path.to_path_buf(),
            message: format!(
                "a stored structure is uint8 0/255, not {}",
                volume.data.dtype().name()
            ),
        });
    };
    if let Some(v) = values.iter().find(|&&v| v != 0 && v != 255) {
        return Err(StoreError::BadRecord {
            path: path.to_path_buf(),
            message: format!("a stored structure holds only 0 and 255, found {v}"),
        });
    }
    let grid: Grid = volume.grid;
    Ok(
        BoneMask::new(grid, values.iter().map(|&v| v == 255).collect())
            .expect("the volume's own grid fits its data"),
    )
}

/// One row per checkpoint.
pub fn write_checkpoints_csv(path: &Path, checkpoints: &[Checkpoint]) -> Result<(), StoreError> {
    let mut s = String::from(
        "index,day,phase,bmd_trabecular_pct,bmd_whole_pct,target_bv_tv,bv_tv,bv_tv_change_pct,\
         tb_th_mm,tb_sp_mm,tb_n_per_mm,conn_d_per_mm3,smi,da,e_app_mpa,dice_vs_original,\
         removed_voxels,added_voxels,fe_solves,moves,islands,seconds\n",
    );
    for c in checkpoints {
        let m = &c.morphometry;
        s.push_str(&format!(
            "{},{},{},{:.6},{:.6},{:.6},{:.6},{:.4},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.4},{:.6},{},{},{},{},{},{:.3}\n",
            c.index,
            c.day,
            csv_field(&c.phase),
            c.bmd_trabecular_pct,
            c.bmd_whole_pct,
            c.target_bv_tv,
            c.bv_tv,
            c.bv_tv_change_pct,
            m.tb_th_mm,
            m.tb_sp_mm,
            m.tb_n_per_mm,
            m.conn_d_per_mm3,
            m.smi,
            m.da,
            c.e_app_mpa,
            c.dice_vs_original,
            c.removed_voxels,
            c.added_voxels,
            c.fe_solves,
            c.moves,
            c.islands,
            c.seconds
        ));
    }
    write_bytes_atomic(path, s.as_bytes()).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The record of `run` as it stands.
pub fn record_of(run: &super::MultiscaleRun, microstructure: &str) -> RunRecord {
    let sim = run.simulation();
    let original = run.original();
    RunRecord {
        format: RUN_FORMAT,
        scenario_name: sim.scenario.name.clone(),
        scenario_toml: sim.scenario.to_toml_string(),
        mapping: run.mapping().spec(),
        checkpoint_every_days: run.params().checkpoint_every_days,
        coupled: run.params().coupled,
        microstructure: microstructure.to_string(),
        dims: original.dims().as_array(),
        voxel_size_mm: original.grid.voxel_size_mm,
        checkpoints: run.checkpoints().to_vec(),
        schedule: run.schedule().to_vec(),
        finished: run.is_finished(),
    }
}

impl RunFolder {
    /// Stores the structure of the run's last checkpoint, then the record naming it.
    pub fn save_checkpoint(
        &self,
        run: &super::MultiscaleRun,
        microstructure: &str,
    ) -> Result<(), StoreError> {
        let last = run
            .checkpoints()
            .last()
            .expect("checkpoint 0 is always present");
        self.write_structure(last.day, run.current(), run.original())?;
        self.write_record(&record_of(run, microstructure), None, None)
    }

    /// What a resumed run needs: the record, the original structure and the structure of the
    /// last checkpoint, each checked against the record.
    pub fn load_for_resume(&self) -> Result<(RunRecord, BoneMask, BoneMask), StoreError> {
        let record = self.read_record()?;
        let original = self.read_structure(0, &record)?;
        let last = record
            .checkpoints
            .last()
            .expect("read_record checks day 0")
            .day;
        let current = self.read_structure(last, &record)?;
        Ok((record, original, current))
    }
}
