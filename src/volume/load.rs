//! One entry point for reading and writing volumes, dispatching on the path.
//!
//! Reading ([`load_volume`]):
//! - `NAME.json`: raw + JSON sidecar ([`super::sidecar`]); `NAME.raw` / `NAME.raw.gz` given
//!   directly are read through the `NAME.json` beside them;
//! - `NAME.nii`, `NAME.nii.gz`: NIfTI-1 ([`super::nifti`]);
//! - a directory: a DICOM series if any file in it has the `DICM` marker at byte 128
//!   ([`super::dicom`]), otherwise an image stack of PNG/TIFF slices at 1 mm
//!   ([`super::stack`]; use [`super::stack::read_image_stack`] for another voxel size).
//!
//! Writing ([`save_volume`], [`save_volume_with`]): `NAME.json` (+ `NAME.raw`, or
//! `NAME.raw.gz` with [`SaveOptions::compress_raw`]), `NAME.raw` / `NAME.raw.gz` (sidecar
//! `NAME.json` beside it, compression chosen by the extension), `NAME.nii`, `NAME.nii.gz`.

use std::path::{Path, PathBuf};

use super::dicom::{is_dicom_file, read_dicom_series};
use super::error::VolumeError;
use super::grid::Volume;
use super::nifti::{read_nifti, write_nifti};
use super::sidecar::{RawCompression, read_sidecar, write_sidecar};
use super::stack::{StackReadOptions, read_image_stack};

/// The on-disk kinds of volume this crate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeFormat {
    /// `NAME.json` beside `NAME.raw[.gz]`.
    Sidecar,
    /// `NAME.nii` or `NAME.nii.gz`.
    Nifti,
    /// A folder of DICOM slices.
    DicomSeries,
    /// A folder of PNG/TIFF slices.
    ImageStack,
}

fn lower_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Decides how `path` is to be read (without reading the volume).
pub fn detect_format(path: &Path) -> Result<VolumeFormat, VolumeError> {
    let meta = std::fs::metadata(path).map_err(|e| VolumeError::io(path, e))?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| VolumeError::io(path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| VolumeError::io(path, e))?;
            let p = entry.path();
            if !entry.file_name().to_string_lossy().starts_with('.')
                && p.is_file()
                && is_dicom_file(&p)
            {
                return Ok(VolumeFormat::DicomSeries);
            }
        }
        return Ok(VolumeFormat::ImageStack);
    }
    let name = lower_name(path);
    if name.ends_with(".json") || name.ends_with(".raw") || name.ends_with(".raw.gz") {
        Ok(VolumeFormat::Sidecar)
    } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        Ok(VolumeFormat::Nifti)
    } else {
        Err(VolumeError::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: "expected a .json sidecar, .raw[.gz], .nii, .nii.gz, or a folder of DICOM \
                     or PNG/TIFF slices"
                .into(),
        })
    }
}

/// `NAME.raw` / `NAME.raw.gz` / `NAME.json` -> `NAME.json`.
fn sidecar_json_for(path: &Path) -> PathBuf {
    let name = lower_name(path);
    let full = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem_len = if name.ends_with(".raw.gz") {
        full.len() - ".raw.gz".len()
    } else if name.ends_with(".raw") {
        full.len() - ".raw".len()
    } else {
        return path.to_path_buf();
    };
    path.with_file_name(format!("{}.json", &full[..stem_len]))
}

/// Reads a volume from a sidecar, NIfTI file, DICOM folder or image-stack folder.
pub fn load_volume(path: &Path) -> Result<Volume, VolumeError> {
    match detect_format(path)? {
        VolumeFormat::Sidecar => read_sidecar(&sidecar_json_for(path)),
        VolumeFormat::Nifti => read_nifti(path),
        VolumeFormat::DicomSeries => read_dicom_series(path),
        VolumeFormat::ImageStack => read_image_stack(path, &StackReadOptions::default()),
    }
}

/// Options for [`save_volume_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveOptions {
    /// For a `.json` target: write `NAME.raw.gz` instead of `NAME.raw`.
    pub compress_raw: bool,
}

/// Writes a volume; the format follows the extension (see the module docs).
pub fn save_volume(volume: &Volume, path: &Path) -> Result<(), VolumeError> {
    save_volume_with(volume, path, &SaveOptions::default())
}

/// Writes a volume with options; every file is written atomically.
pub fn save_volume_with(
    volume: &Volume,
    path: &Path,
    options: &SaveOptions,
) -> Result<(), VolumeError> {
    let name = lower_name(path);
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        write_nifti(volume, path)
    } else if name.ends_with(".json") {
        let comp = if options.compress_raw {
            RawCompression::Gzip
        } else {
            RawCompression::None
        };
        write_sidecar(volume, path, comp)
    } else if name.ends_with(".raw.gz") {
        write_sidecar(volume, &sidecar_json_for(path), RawCompression::Gzip)
    } else if name.ends_with(".raw") {
        write_sidecar(volume, &sidecar_json_for(path), RawCompression::None)
    } else {
        Err(VolumeError::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: "can write .json (+ .raw / .raw.gz), .raw, .raw.gz, .nii or .nii.gz; \
                     use stack::write_png_stack for PNG slices"
                .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::grid::{Dims, Grid, VoxelData};
    use crate::volume::stack::{StackBitDepth, write_png_stack};

    fn vol() -> Volume {
        let d = Dims::new(6, 5, 4);
        Volume::new(
            Grid {
                dims: d,
                voxel_size_mm: [0.02; 3],
                origin_mm: [0.0; 3],
            },
            VoxelData::U8((0..d.len()).map(|i| (i * 11 % 256) as u8).collect()),
        )
        .unwrap()
    }

    #[test]
    fn save_and_load_dispatch_on_extension() {
        let dir = tempfile::tempdir().unwrap();
        let v = vol();
        for name in ["a.json", "b.raw", "c.raw.gz", "d.nii", "e.nii.gz"] {
            let p = dir.path().join(name);
            save_volume(&v, &p).unwrap();
            assert_eq!(load_volume(&p).unwrap(), v, "{name}");
        }
        assert!(dir.path().join("c.json").is_file());
        assert!(dir.path().join("c.raw.gz").is_file());
        let p = dir.path().join("z.json");
        save_volume_with(&v, &p, &SaveOptions { compress_raw: true }).unwrap();
        assert!(dir.path().join("z.raw.gz").is_file());
        assert!(!dir.path().join("z.raw").exists());
        assert_eq!(load_volume(&p).unwrap(), v);
    }

    #[test]
    fn folder_dispatch_picks_image_stack_or_dicom() {
        let dir = tempfile::tempdir().unwrap();
        let stack = dir.path().join("stack");
        write_png_stack(&vol(), &stack, StackBitDepth::Eight).unwrap();
        assert_eq!(detect_format(&stack).unwrap(), VolumeFormat::ImageStack);
        assert_eq!(load_volume(&stack).unwrap().data, vol().data);

        let dcm = dir.path().join("dcm");
        std::fs::create_dir(&dcm).unwrap();
        let stored = vec![0i32; 12];
        for z in 0..2 {
            let spec = crate::volume::dicom::tests::SliceSpec {
                rows: 3,
                columns: 4,
                position: [0.0, 0.0, z as f64],
                orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                pixel_spacing: [0.5, 0.5],
                bits: 16,
                signed: true,
                slope: 1.0,
                intercept: -1024.0,
                stored: &stored,
                transfer_syntax: dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN,
            };
            crate::volume::dicom::tests::write_slice(&dcm.join(format!("IM{z}")), &spec, z);
        }
        assert_eq!(detect_format(&dcm).unwrap(), VolumeFormat::DicomSeries);
        let v = load_volume(&dcm).unwrap();
        assert_eq!(v.dims(), Dims::new(4, 3, 2));
    }

    #[test]
    fn unknown_extension_is_an_unsupported_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scan.mha");
        std::fs::write(&p, b"x").unwrap();
        let err = load_volume(&p).unwrap_err();
        assert!(
            matches!(err, VolumeError::UnsupportedFormat { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("scan.mha"));
        let err = save_volume(&vol(), &dir.path().join("out.vtk")).unwrap_err();
        assert!(
            matches!(err, VolumeError::UnsupportedFormat { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("out.vtk"));
    }

    #[test]
    fn missing_path_is_an_io_error_naming_it() {
        let err = load_volume(Path::new("/nonexistent/osteolab/vol.json")).unwrap_err();
        assert!(matches!(err, VolumeError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/osteolab/vol.json"));
    }
}
