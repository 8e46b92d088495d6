//! DICOM CT series: a folder of single-frame slices, read with `dicom-object`.
//!
//! Conventions (DICOM PS3.3 C.7.6.2, C.7.6.3, C.11.1):
//! - only uncompressed Implicit or Explicit VR Little Endian transfer syntaxes are read; any
//!   other (JPEG, JPEG 2000, RLE, deflate, big endian) is [`VolumeError::UnsupportedTransferSyntax`];
//! - one sample per pixel, BitsAllocated 8 or 16, PixelRepresentation 0 (unsigned) or 1
//!   (two's complement), BitsStored bits used (sign-extended when signed);
//! - values are converted to Hounsfield units (or whatever the modality LUT gives) as
//!   `HU = RescaleSlope * stored + RescaleIntercept` (defaults 1 and 0), stored as f32;
//! - columns are x, rows are y; slices are ordered by ImagePositionPatient projected on the
//!   slice normal `n = row × column` (from ImageOrientationPatient); z follows that order;
//! - voxel size: x = column spacing = PixelSpacing\[1\], y = row spacing = PixelSpacing\[0\],
//!   z = the spacing of the sorted slice positions, which must be uniform within 1 % (else
//!   [`VolumeError::NonUniformSpacing`]); a single slice takes SpacingBetweenSlices or
//!   SliceThickness;
//! - origin: ImagePositionPatient of the first slice (patient coordinates, mm); the slice
//!   orientation itself is not stored in the axis-aligned [`Grid`].
//!
//! Files in the folder without the `DICM` marker at byte 128 (and DICOMDIR files) are ignored.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use dicom_core::Tag;
use dicom_core::value::DicomValueType;
use dicom_core::value::PrimitiveValue;
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTable;
use dicom_object::{DefaultDicomObject, open_file};
use rayon::prelude::*;

use super::error::{VolumeError, check_dims, check_voxel_size};
use super::grid::{Dims, Grid, Volume, VoxelData};

/// True when the file has the `DICM` marker after its 128-byte preamble (DICOM PS3.10 7.1).
pub fn is_dicom_file(path: &Path) -> bool {
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let mut buf = [0u8; 4];
    f.seek(SeekFrom::Start(128)).is_ok() && f.read_exact(&mut buf).is_ok() && &buf == b"DICM"
}

/// The DICOM files of a folder (not hidden, with the `DICM` marker), in name order.
pub fn list_dicom_files(dir: &Path) -> Result<Vec<PathBuf>, VolumeError> {
    let entries = std::fs::read_dir(dir).map_err(|e| VolumeError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| VolumeError::io(dir, e))?;
        let p = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && p.is_file() && is_dicom_file(&p) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

struct Slice {
    path: PathBuf,
    rows: usize,
    columns: usize,
    position: [f64; 3],
    orientation: [f64; 6],
    pixel_spacing: [f64; 2],
    single_slice_spacing: Option<f64>,
    hu: Vec<f32>,
}

fn dicom_err(path: &Path, message: impl Into<String>) -> VolumeError {
    VolumeError::Dicom {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_meta(path: &Path) -> Result<FileMetaTable, VolumeError> {
    let mut f = BufReader::new(File::open(path).map_err(|e| VolumeError::io(path, e))?);
    f.seek(SeekFrom::Start(128))
        .map_err(|e| VolumeError::io(path, e))?;
    FileMetaTable::from_reader(f).map_err(|e| dicom_err(path, format!("bad file meta group: {e}")))
}

fn get_u16(
    obj: &DefaultDicomObject,
    path: &Path,
    tag: Tag,
    name: &str,
) -> Result<Option<u16>, VolumeError> {
    match obj.get(tag) {
        None => Ok(None),
        Some(e) => e
            .to_int::<u16>()
            .map(Some)
            .map_err(|err| dicom_err(path, format!("{name}: {err}"))),
    }
}

fn require_u16(
    obj: &DefaultDicomObject,
    path: &Path,
    tag: Tag,
    name: &str,
) -> Result<u16, VolumeError> {
    get_u16(obj, path, tag, name)?.ok_or_else(|| dicom_err(path, format!("missing {name} {tag}")))
}

fn get_f64(
    obj: &DefaultDicomObject,
    path: &Path,
    tag: Tag,
    name: &str,
) -> Result<Option<f64>, VolumeError> {
    match obj.get(tag) {
        None => Ok(None),
        Some(e) => {
            let v = e
                .to_float64()
                .map_err(|err| dicom_err(path, format!("{name}: {err}")))?;
            if v.is_finite() {
                Ok(Some(v))
            } else {
                Err(dicom_err(path, format!("{name} is not finite")))
            }
        }
    }
}

fn get_multi_f64<const N: usize>(
    obj: &DefaultDicomObject,
    path: &Path,
    tag: Tag,
    name: &str,
) -> Result<Option<[f64; N]>, VolumeError> {
    match obj.get(tag) {
        None => Ok(None),
        Some(e) => {
            let v = e
                .to_multi_float64()
                .map_err(|err| dicom_err(path, format!("{name}: {err}")))?;
            if v.len() != N || v.iter().any(|x| !x.is_finite()) {
                return Err(dicom_err(
                    path,
                    format!("{name} must hold {N} finite numbers, found {v:?}"),
                ));
            }
            let mut out = [0.0; N];
            out.copy_from_slice(&v);
            Ok(Some(out))
        }
    }
}

fn read_slice(path: &Path) -> Result<Slice, VolumeError> {
    let meta = read_meta(path)?;
    let ts = meta
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    if ts != uids::EXPLICIT_VR_LITTLE_ENDIAN && ts != uids::IMPLICIT_VR_LITTLE_ENDIAN {
        return Err(VolumeError::UnsupportedTransferSyntax {
            path: path.to_path_buf(),
            uid: ts,
        });
    }
    let obj = open_file(path).map_err(|e| dicom_err(path, e.to_string()))?;

    let samples = get_u16(&obj, path, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
    if samples != 1 {
        return Err(VolumeError::UnsupportedPixelType {
            path: path.to_path_buf(),
            what: format!("{samples} samples per pixel (only grayscale is read)"),
        });
    }
    if let Some(frames) = obj.get(tags::NUMBER_OF_FRAMES) {
        let k = frames.to_int::<i64>().unwrap_or(1);
        if k != 1 {
            return Err(VolumeError::UnsupportedPixelType {
                path: path.to_path_buf(),
                what: format!("multi-frame image with {k} frames (one slice per file is read)"),
            });
        }
    }
    let rows = require_u16(&obj, path, tags::ROWS, "Rows")? as usize;
    let columns = require_u16(&obj, path, tags::COLUMNS, "Columns")? as usize;
    if rows == 0 || columns == 0 {
        return Err(VolumeError::BadDims {
            path: path.to_path_buf(),
            dims: vec![columns as i64, rows as i64],
            reason: "Rows and Columns must be at least 1".into(),
        });
    }
    let bits_allocated = require_u16(&obj, path, tags::BITS_ALLOCATED, "BitsAllocated")?;
    if bits_allocated != 8 && bits_allocated != 16 {
        return Err(VolumeError::UnsupportedPixelType {
            path: path.to_path_buf(),
            what: format!("BitsAllocated = {bits_allocated} (8 or 16 are read)"),
        });
    }
    let bits_stored =
        get_u16(&obj, path, tags::BITS_STORED, "BitsStored")?.unwrap_or(bits_allocated);
    if bits_stored == 0 || bits_stored > bits_allocated {
        return Err(VolumeError::UnsupportedPixelType {
            path: path.to_path_buf(),
            what: format!("BitsStored = {bits_stored} with BitsAllocated = {bits_allocated}"),
        });
    }
    let signed = match get_u16(
        &obj,
        path,
        tags::PIXEL_REPRESENTATION,
        "PixelRepresentation",
    )? {
        None | Some(0) => false,
        Some(1) => true,
        Some(k) => {
            return Err(dicom_err(
                path,
                format!("PixelRepresentation = {k} (0 or 1)"),
            ));
        }
    };
    let slope = get_f64(&obj, path, tags::RESCALE_SLOPE, "RescaleSlope")?.unwrap_or(1.0);
    let intercept =
        get_f64(&obj, path, tags::RESCALE_INTERCEPT, "RescaleIntercept")?.unwrap_or(0.0);
    let pixel_spacing = get_multi_f64::<2>(&obj, path, tags::PIXEL_SPACING, "PixelSpacing")?
        .ok_or_else(|| dicom_err(path, "missing PixelSpacing (0028,0030)"))?;
    let position = get_multi_f64::<3>(
        &obj,
        path,
        tags::IMAGE_POSITION_PATIENT,
        "ImagePositionPatient",
    )?;
    let orientation = get_multi_f64::<6>(
        &obj,
        path,
        tags::IMAGE_ORIENTATION_PATIENT,
        "ImageOrientationPatient",
    )?;
    let single_slice_spacing = get_f64(
        &obj,
        path,
        tags::SPACING_BETWEEN_SLICES,
        "SpacingBetweenSlices",
    )?
    .or(get_f64(
        &obj,
        path,
        tags::SLICE_THICKNESS,
        "SliceThickness",
    )?);

    let pixel = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| dicom_err(path, "missing PixelData (7FE0,0010)"))?;
    let prim = pixel.value().primitive().ok_or_else(|| {
        dicom_err(
            path,
            "PixelData is encapsulated (compressed), which is not supported",
        )
    })?;
    let bytes: Vec<u8> = match prim {
        PrimitiveValue::U8(v) => v.to_vec(),
        PrimitiveValue::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        PrimitiveValue::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        PrimitiveValue::Empty => Vec::new(),
        other => {
            return Err(dicom_err(
                path,
                format!(
                    "PixelData has unexpected value type {:?}",
                    other.value_type()
                ),
            ));
        }
    };
    let n = rows * columns;
    let bpp = (bits_allocated / 8) as usize;
    let needed = n * bpp;
    if bytes.len() < needed {
        return Err(VolumeError::Truncated {
            path: path.to_path_buf(),
            expected_bytes: needed as u64,
            found_bytes: bytes.len() as u64,
        });
    }
    // One trailing pad byte keeps element lengths even; anything more is another frame's worth.
    if bytes.len() > needed + 1 {
        return Err(VolumeError::SizeMismatch {
            path: path.to_path_buf(),
            dims: [columns, rows, 1],
            bytes_per_voxel: bpp,
            expected_bytes: needed as u64,
            found_bytes: bytes.len() as u64,
        });
    }
    let (slope, intercept) = (slope as f32, intercept as f32);
    let shift = 32 - bits_stored as u32;
    let decode = |raw: u32| -> f32 {
        let stored = if signed {
            ((raw << shift) as i32 >> shift) as f32
        } else {
            ((raw << shift) >> shift) as f32
        };
        slope * stored + intercept
    };
    let hu: Vec<f32> = if bpp == 1 {
        bytes[..needed].iter().map(|&b| decode(b as u32)).collect()
    } else {
        bytes[..needed]
            .chunks_exact(2)
            .map(|c| decode(u16::from_le_bytes([c[0], c[1]]) as u32))
            .collect()
    };
    Ok(Slice {
        path: path.to_path_buf(),
        rows,
        columns,
        position: position.unwrap_or([0.0; 3]),
        orientation: orientation.unwrap_or([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        pixel_spacing,
        single_slice_spacing,
        hu,
    })
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Reads a folder holding one CT series into an f32 volume of rescaled values (HU).
pub fn read_dicom_series(dir: &Path) -> Result<Volume, VolumeError> {
    let files = list_dicom_files(dir)?;
    let parsed: Vec<Result<Option<Slice>, VolumeError>> = files
        .par_iter()
        .map(|p| {
            // DICOMDIR and other non-image objects are skipped.
            let meta = read_meta(p)?;
            let class = meta
                .media_storage_sop_class_uid()
                .trim_end_matches(['\0', ' ']);
            if class == uids::MEDIA_STORAGE_DIRECTORY_STORAGE {
                return Ok(None);
            }
            read_slice(p).map(Some)
        })
        .collect();
    let mut slices = Vec::with_capacity(parsed.len());
    for s in parsed {
        if let Some(s) = s? {
            slices.push(s);
        }
    }
    if slices.is_empty() {
        return Err(VolumeError::EmptySliceFolder {
            path: dir.to_path_buf(),
            expected: "DICOM files with the DICM marker at byte 128",
        });
    }

    let first = &slices[0];
    let (rows, columns) = (first.rows, first.columns);
    let orient = first.orientation;
    let row_dir = [orient[0], orient[1], orient[2]];
    let col_dir = [orient[3], orient[4], orient[5]];
    let normal = cross(row_dir, col_dir);
    let norm = dot(normal, normal).sqrt();
    if norm.is_nan() || norm <= 0.5 {
        return Err(dicom_err(
            &first.path,
            format!("ImageOrientationPatient {orient:?} does not give two independent directions"),
        ));
    }
    let normal = normal.map(|c| c / norm);
    for s in &slices {
        if (s.rows, s.columns) != (rows, columns) {
            return Err(VolumeError::MixedSliceSizes {
                path: s.path.clone(),
                first: first.path.clone(),
                expected: [columns, rows],
                found: [s.columns, s.rows],
            });
        }
        if s.orientation
            .iter()
            .zip(&orient)
            .any(|(a, b)| (a - b).abs() > 1e-4)
        {
            return Err(dicom_err(
                &s.path,
                format!(
                    "ImageOrientationPatient {:?} differs from {:?} of {}",
                    s.orientation,
                    orient,
                    first.path.display()
                ),
            ));
        }
        if s.pixel_spacing
            .iter()
            .zip(&first.pixel_spacing)
            .any(|(a, b)| (a - b).abs() > 1e-3 * b.abs())
        {
            return Err(dicom_err(
                &s.path,
                format!(
                    "PixelSpacing {:?} differs from {:?} of {}",
                    s.pixel_spacing,
                    first.pixel_spacing,
                    first.path.display()
                ),
            ));
        }
    }

    let mut keyed: Vec<(f64, Slice)> = slices
        .into_iter()
        .map(|s| (dot(s.position, normal), s))
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let nz = keyed.len();
    let slice_spacing = if nz == 1 {
        keyed[0]
            .1
            .single_slice_spacing
            .ok_or_else(|| VolumeError::BadVoxelSize {
                path: keyed[0].1.path.clone(),
                voxel_size_mm: vec![keyed[0].1.pixel_spacing[1], keyed[0].1.pixel_spacing[0]],
            })?
    } else {
        let mean = (keyed[nz - 1].0 - keyed[0].0) / (nz - 1) as f64;
        for w in keyed.windows(2) {
            let gap = w[1].0 - w[0].0;
            if mean.is_nan() || mean <= 0.0 || gap <= 1e-6 * mean.abs().max(1e-6) {
                return Err(VolumeError::NonUniformSpacing {
                    path: w[1].1.path.clone(),
                    message: format!(
                        "slice at {:.4} mm along the normal coincides with {}",
                        w[1].0,
                        w[0].1.path.display()
                    ),
                });
            }
            if (gap - mean).abs() > 0.01 * mean {
                return Err(VolumeError::NonUniformSpacing {
                    path: w[1].1.path.clone(),
                    message: format!(
                        "gap of {gap:.4} mm to {} vs a mean spacing of {mean:.4} mm (tolerance 1 %)",
                        w[0].1.path.display()
                    ),
                });
            }
        }
        mean
    };
    let voxel_size_mm = [
        first_spacing(&keyed, 1),
        first_spacing(&keyed, 0),
        slice_spacing,
    ];
    check_voxel_size(&keyed[0].1.path, voxel_size_mm)?;
    let n = check_dims(dir, [columns, rows, nz], 4)?;
    let origin_mm = keyed[0].1.position;
    let mut data = Vec::with_capacity(n);
    for (_, s) in &keyed {
        data.extend_from_slice(&s.hu);
    }
    let grid = Grid {
        dims: Dims::new(columns, rows, nz),
        voxel_size_mm,
        origin_mm,
    };
    Volume::new(grid, VoxelData::F32(data))
        .ok_or_else(|| dicom_err(dir, "slice data does not fill the grid"))
}

fn first_spacing(keyed: &[(f64, Slice)], k: usize) -> f64 {
    keyed[0].1.pixel_spacing[k]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dicom_core::value::C;
    use dicom_core::{DataElement, VR};
    use dicom_object::InMemDicomObject;
    use dicom_object::meta::FileMetaTableBuilder;

    /// One synthetic CT slice.
    pub(crate) struct SliceSpec<'a> {
        pub rows: u16,
        pub columns: u16,
        pub position: [f64; 3],
        pub orientation: [f64; 6],
        pub pixel_spacing: [f64; 2],
        pub bits: u16,
        pub signed: bool,
        pub slope: f64,
        pub intercept: f64,
        /// Stored values (interpreted per `bits` / `signed`), row-major.
        pub stored: &'a [i32],
        pub transfer_syntax: &'a str,
    }

    fn ds<const N: usize>(v: [f64; N]) -> PrimitiveValue {
        PrimitiveValue::Strs(v.iter().map(|x| format!("{x}")).collect::<C<String>>())
    }

    pub(crate) fn write_slice(path: &Path, s: &SliceSpec, uid_suffix: usize) {
        let bytes: Vec<u8> = if s.bits == 8 {
            s.stored.iter().map(|&v| v as u8).collect()
        } else {
            s.stored
                .iter()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect()
        };
        let sop_uid = format!("2.25.1234567.{uid_suffix}");
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from(uids::CT_IMAGE_STORAGE),
            ),
            DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(sop_uid.as_str()),
            ),
            DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("CT")),
            DataElement::new(tags::SLICE_THICKNESS, VR::DS, PrimitiveValue::from("1.25")),
            DataElement::new(tags::IMAGE_POSITION_PATIENT, VR::DS, ds(s.position)),
            DataElement::new(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds(s.orientation)),
            DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
            DataElement::new(
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                PrimitiveValue::from("MONOCHROME2"),
            ),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(s.rows)),
            DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(s.columns)),
            DataElement::new(tags::PIXEL_SPACING, VR::DS, ds(s.pixel_spacing)),
            DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(s.bits)),
            DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(s.bits)),
            DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(s.bits - 1)),
            DataElement::new(
                tags::PIXEL_REPRESENTATION,
                VR::US,
                PrimitiveValue::from(u16::from(s.signed)),
            ),
            DataElement::new(
                tags::RESCALE_INTERCEPT,
                VR::DS,
                PrimitiveValue::from(format!("{}", s.intercept)),
            ),
            DataElement::new(
                tags::RESCALE_SLOPE,
                VR::DS,
                PrimitiveValue::from(format!("{}", s.slope)),
            ),
            DataElement::new(
                tags::PIXEL_DATA,
                if s.bits == 8 { VR::OB } else { VR::OW },
                PrimitiveValue::from(bytes),
            ),
        ]);
        let file = obj
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(s.transfer_syntax))
            .unwrap();
        file.write_to_file(path).unwrap();
    }

    fn axial(position_z: f64, stored: &[i32]) -> SliceSpec<'_> {
        SliceSpec {
            rows: 3,
            columns: 4,
            position: [-5.0, 7.0, position_z],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [0.6, 0.7],
            bits: 16,
            signed: true,
            slope: 1.0,
            intercept: -1024.0,
            stored,
            transfer_syntax: uids::EXPLICIT_VR_LITTLE_ENDIAN,
        }
    }

    fn stored_for(z: usize) -> Vec<i32> {
        (0..12).map(|i| i * 100 - 500 + z as i32 * 1000).collect()
    }

    #[test]
    fn dicom_series_in_shuffled_file_order_is_sorted_by_position_and_rescaled_to_hu() {
        // Five axial slices 2.5 mm apart, written so that file-name order is not z order.
        let dir = tempfile::tempdir().unwrap();
        let positions = [10.0, 12.5, 15.0, 17.5, 20.0];
        let names = ["c.dcm", "a.dcm", "e.dcm", "b.dcm", "d.dcm"];
        for (z, (&pz, name)) in positions.iter().zip(names).enumerate() {
            let stored = stored_for(z);
            write_slice(&dir.path().join(name), &axial(pz, &stored), z);
        }
        std::fs::write(dir.path().join("README.txt"), "not dicom").unwrap();
        let v = read_dicom_series(dir.path()).unwrap();
        assert_eq!(v.dims(), Dims::new(4, 3, 5));
        // x = column spacing (PixelSpacing[1]), y = row spacing (PixelSpacing[0]); tolerance
        // 1e-9 mm, as the values are parsed from decimal strings.
        let vs = v.grid.voxel_size_mm;
        for (a, b) in vs.iter().zip([0.7, 0.6, 2.5]) {
            assert!((a - b).abs() < 1e-9, "{vs:?}");
        }
        assert_eq!(v.grid.origin_mm, [-5.0, 7.0, 10.0]);
        let VoxelData::F32(hu) = &v.data else {
            panic!("expected f32 HU")
        };
        for z in 0..5 {
            for (i, &s) in stored_for(z).iter().enumerate() {
                // Exact: integer HU values are representable in f32.
                assert_eq!(hu[z * 12 + i], s as f32 - 1024.0, "z {z} i {i}");
            }
        }
    }

    #[test]
    fn dicom_coronal_implicit_vr_unsigned_series_sorted_along_normal() {
        // Rows along +x, columns along -z: the normal row × column is +y, so the slices are
        // ordered by their y position (3, 1, 2 in file order -> 1, 2, 3).
        let dir = tempfile::tempdir().unwrap();
        for (k, y) in [3.0, 1.0, 2.0].into_iter().enumerate() {
            let stored: Vec<i32> = (0..6).map(|i| i + 10 * y as i32).collect();
            let spec = SliceSpec {
                rows: 2,
                columns: 3,
                position: [0.0, y, 0.0],
                orientation: [1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
                pixel_spacing: [0.5, 0.5],
                bits: 16,
                signed: false,
                slope: 2.0,
                intercept: -1000.0,
                stored: &stored,
                transfer_syntax: uids::IMPLICIT_VR_LITTLE_ENDIAN,
            };
            write_slice(&dir.path().join(format!("s{k}.dcm")), &spec, k);
        }
        let v = read_dicom_series(dir.path()).unwrap();
        assert_eq!(v.dims(), Dims::new(3, 2, 3));
        assert!((v.grid.voxel_size_mm[2] - 1.0).abs() < 1e-9);
        let VoxelData::F32(hu) = &v.data else {
            panic!()
        };
        for z in 0..3 {
            let y = (z + 1) as f32;
            for i in 0..6 {
                assert_eq!(hu[z * 6 + i], 2.0 * (i as f32 + 10.0 * y) - 1000.0);
            }
        }
    }

    #[test]
    fn dicom_8_bit_series_is_read() {
        let dir = tempfile::tempdir().unwrap();
        for z in 0..2 {
            let stored: Vec<i32> = (0..12).map(|i| i * 20 + z).collect();
            let mut spec = axial(z as f64, &stored);
            spec.bits = 8;
            spec.signed = false;
            spec.intercept = 0.0;
            write_slice(&dir.path().join(format!("{z}.dcm")), &spec, z as usize);
        }
        let v = read_dicom_series(dir.path()).unwrap();
        let VoxelData::F32(hu) = &v.data else {
            panic!()
        };
        assert_eq!(hu[12 + 11], 221.0);
        assert!((v.grid.voxel_size_mm[2] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn dicom_non_uniform_spacing_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let stored = stored_for(0);
        for (k, z) in [0.0, 1.0, 2.05].into_iter().enumerate() {
            write_slice(&dir.path().join(format!("n{k}.dcm")), &axial(z, &stored), k);
        }
        let err = read_dicom_series(dir.path()).unwrap_err();
        assert!(
            matches!(err, VolumeError::NonUniformSpacing { .. }),
            "{err:?}"
        );
        // The first gap that breaks the 1 % rule (1.0 mm against a 1.025 mm mean) is named.
        assert!(err.to_string().contains("n1.dcm"), "{err}");
    }

    #[test]
    fn dicom_duplicate_positions_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let stored = stored_for(0);
        for (k, z) in [0.0, 1.0, 1.0].into_iter().enumerate() {
            write_slice(&dir.path().join(format!("d{k}.dcm")), &axial(z, &stored), k);
        }
        let err = read_dicom_series(dir.path()).unwrap_err();
        assert!(
            matches!(err, VolumeError::NonUniformSpacing { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn dicom_compressed_transfer_syntax_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rle.dcm");
        let stored = stored_for(0);
        write_slice(&p, &axial(0.0, &stored), 0);
        // Re-label the file as RLE Lossless (same UID length, so the meta group stays valid).
        let mut bytes = std::fs::read(&p).unwrap();
        let from = uids::EXPLICIT_VR_LITTLE_ENDIAN.as_bytes();
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        bytes[at..at + from.len()].copy_from_slice(uids::RLE_LOSSLESS.as_bytes());
        std::fs::write(&p, bytes).unwrap();
        let err = read_dicom_series(dir.path()).unwrap_err();
        assert!(
            matches!(&err, VolumeError::UnsupportedTransferSyntax { uid, .. } if uid == uids::RLE_LOSSLESS),
            "{err:?}"
        );
        assert!(err.to_string().contains("rle.dcm"), "{err}");
    }

    #[test]
    fn dicom_mixed_slice_sizes_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let a = stored_for(0);
        write_slice(&dir.path().join("a.dcm"), &axial(0.0, &a), 0);
        let b: Vec<i32> = vec![0; 20];
        let mut spec = axial(1.0, &b);
        spec.rows = 4;
        spec.columns = 5;
        write_slice(&dir.path().join("b.dcm"), &spec, 1);
        let err = read_dicom_series(dir.path()).unwrap_err();
        assert!(
            matches!(err, VolumeError::MixedSliceSizes { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("b.dcm"), "{err}");
    }

    #[test]
    fn dicom_truncated_pixel_data_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let short: Vec<i32> = vec![0; 6];
        write_slice(&dir.path().join("short.dcm"), &axial(0.0, &short), 0);
        let err = read_dicom_series(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                VolumeError::Truncated {
                    expected_bytes: 24,
                    found_bytes: 12,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("short.dcm"), "{err}");
    }

    #[test]
    fn folder_without_dicom_files_is_an_empty_slice_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.dcm"), vec![0u8; 200]).unwrap();
        let err = read_dicom_series(dir.path()).unwrap_err();
        assert!(
            matches!(err, VolumeError::EmptySliceFolder { .. }),
            "{err:?}"
        );
    }
}
