//! NIfTI-1 single-file volumes (`.nii`, `.nii.gz`), read and written without external crates.
//!
//! Follows the NIfTI-1 specification (`nifti1.h`, NIfTI Data Format Working Group, 2004): a
//! 348-byte header, magic `"n+1\0"`, data starting at `vox_offset`. The byte order is detected
//! from `sizeof_hdr` (348 read little- or big-endian). Supported datatypes: uint8 (2),
//! int16 (4, read as float32, which holds every int16 exactly), uint16 (512), float32 (16).
//! Voxel size from `pixdim[1..=3]`, converted to mm from the spatial unit in `xyzt_units`
//! (metre, mm, micron; unknown = mm). When `scl_slope` is non-zero and the pair is not the
//! identity (slope ≠ 1 or intercept ≠ 0), values become `slope * stored + inter` as float32.
//! Origin: the translation of the sform (`srow_*[3]`) when `sform_code > 0`, else `qoffset_*`
//! when `qform_code > 0`, else 0. Rotations and axis flips are not applied: the grid is
//! axis-aligned, the origin is the world position of voxel (0, 0, 0).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::error::{VolumeError, check_dims, check_voxel_size};
use super::grid::{DType, Dims, Grid, Volume, VoxelData};
use super::sidecar::{reserve_bytes, write_le};
use crate::atomic::write_atomic;

const HEADER_LEN: usize = 348;
const DT_UINT8: i16 = 2;
const DT_INT16: i16 = 4;
const DT_FLOAT32: i16 = 16;
const DT_UINT16: i16 = 512;

fn datatype_name(code: i16) -> &'static str {
    match code {
        1 => "binary",
        2 => "uint8",
        4 => "int16",
        8 => "int32",
        16 => "float32",
        32 => "complex64",
        64 => "float64",
        128 => "rgb24",
        256 => "int8",
        512 => "uint16",
        768 => "uint32",
        1024 => "int64",
        1280 => "uint64",
        1536 => "float128",
        1792 => "complex128",
        2048 => "complex256",
        2304 => "rgba32",
        _ => "unknown",
    }
}

/// A header field reader in the file's byte order.
struct Fields<'a> {
    h: &'a [u8; HEADER_LEN],
    big_endian: bool,
}

impl Fields<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.h[at..at + N]);
        if self.big_endian {
            b.reverse();
        }
        b
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.bytes::<2>(at))
    }
    fn f32(&self, at: usize) -> f32 {
        f32::from_le_bytes(self.bytes::<4>(at))
    }
}

/// Widens an f32 header value to the f64 its shortest decimal form denotes, so that a voxel
/// size written as 0.0195 reads back as 0.0195 and not 0.019499999....
fn widen(v: f32) -> f64 {
    format!("{v}").parse().unwrap_or(v as f64)
}

fn is_gz(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Reads a `.nii` or `.nii.gz` file (gzip detected from the `.gz` extension or the gzip magic).
pub fn read_nifti(path: &Path) -> Result<Volume, VolumeError> {
    let mut file = File::open(path).map_err(|e| VolumeError::io(path, e))?;
    let mut magic = [0u8; 2];
    let n = file
        .read(&mut magic)
        .map_err(|e| VolumeError::io(path, e))?;
    drop(file);
    let gz = is_gz(path) || (n == 2 && magic == [0x1f, 0x8b]);
    let file = File::open(path).map_err(|e| VolumeError::io(path, e))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    if gz {
        read_nifti_from(path, MultiGzDecoder::new(reader))
    } else {
        read_nifti_from(path, reader)
    }
}

fn read_nifti_from(path: &Path, mut r: impl Read) -> Result<Volume, VolumeError> {
    let bad = |reason: String| VolumeError::BadNifti {
        path: path.to_path_buf(),
        reason,
    };
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut h[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(VolumeError::io(path, e)),
        }
    }
    if got < HEADER_LEN {
        return Err(VolumeError::Truncated {
            path: path.to_path_buf(),
            expected_bytes: HEADER_LEN as u64,
            found_bytes: got as u64,
        });
    }
    let big_endian = if i32::from_le_bytes([h[0], h[1], h[2], h[3]]) == 348 {
        false
    } else if i32::from_be_bytes([h[0], h[1], h[2], h[3]]) == 348 {
        true
    } else {
        return Err(bad(
            "sizeof_hdr is not 348 in either byte order (NIfTI-2 and other formats are not read)"
                .into(),
        ));
    };
    let f = Fields { h: &h, big_endian };
    let magic = &h[344..348];
    if magic == b"ni1\0" {
        return Err(bad(
            "this is the header of a .hdr/.img pair; only single-file .nii is read".into(),
        ));
    }
    if magic != b"n+1\0" {
        return Err(bad(format!("bad magic {magic:?}, expected \"n+1\\0\"")));
    }

    let ndim = f.i16(40);
    if !(1..=7).contains(&ndim) {
        return Err(bad(format!("dim[0] = {ndim} must be 1..7")));
    }
    let dim: Vec<i64> = (0..8).map(|k| f.i16(40 + 2 * k) as i64).collect();
    let mut dims = [1usize; 3];
    for a in 0..3 {
        if a < ndim as usize {
            let d = dim[a + 1];
            if d < 1 {
                return Err(VolumeError::BadDims {
                    path: path.to_path_buf(),
                    dims: dim[1..=ndim as usize].to_vec(),
                    reason: "every dimension must be at least 1".into(),
                });
            }
            dims[a] = d as usize;
        }
    }
    for a in 3..ndim as usize {
        if dim[a + 1] > 1 {
            return Err(bad(format!(
                "{ndim}-D data (dim = {:?}); only 3-D volumes are read",
                &dim[1..=ndim as usize]
            )));
        }
    }

    let datatype = f.i16(70);
    let dtype_in = match datatype {
        DT_UINT8 => DType::Uint8,
        DT_INT16 | DT_UINT16 => DType::Uint16, // 2 bytes per sample; sign handled below
        DT_FLOAT32 => DType::Float32,
        code => {
            return Err(VolumeError::UnsupportedNiftiType {
                path: path.to_path_buf(),
                code,
                name: datatype_name(code),
            });
        }
    };

    let unit_scale_to_mm = match h[123] & 0x07 {
        1 => 1000.0, // metre
        3 => 1e-3,   // micron
        _ => 1.0,    // mm or unknown
    };
    let voxel_size_mm = [
        widen(f.f32(80)) * unit_scale_to_mm,
        if ndim >= 2 {
            widen(f.f32(84)) * unit_scale_to_mm
        } else {
            1.0
        },
        if ndim >= 3 {
            widen(f.f32(88)) * unit_scale_to_mm
        } else {
            1.0
        },
    ];
    check_voxel_size(path, voxel_size_mm)?;

    let vox_offset = f.f32(108);
    if !vox_offset.is_finite() || vox_offset < HEADER_LEN as f32 || vox_offset > 1.0e9 {
        return Err(bad(format!(
            "vox_offset = {vox_offset} must be at least 348"
        )));
    }
    let vox_offset = vox_offset as u64;

    let scl_slope = f.f32(112);
    let scl_inter = f.f32(116);
    let apply_scaling = scl_slope.is_finite()
        && scl_inter.is_finite()
        && scl_slope != 0.0
        && (scl_slope != 1.0 || scl_inter != 0.0);

    let sform_code = f.i16(254);
    let qform_code = f.i16(252);
    let origin_mm = if sform_code > 0 {
        [f.f32(292), f.f32(308), f.f32(324)]
    } else if qform_code > 0 {
        [f.f32(268), f.f32(272), f.f32(276)]
    } else {
        [0.0; 3]
    };
    let origin_mm = origin_mm.map(|o| {
        if o.is_finite() {
            widen(o) * unit_scale_to_mm
        } else {
            0.0
        }
    });

    let bpv = dtype_in.bytes_per_voxel();
    let n = check_dims(path, dims, bpv)?;
    let expected = (n * bpv) as u64;

    // Skip the extensions between the header and the data.
    let skip = vox_offset - HEADER_LEN as u64;
    let skipped = std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink());
    match skipped {
        Ok(k) if k == skip => {}
        Ok(k) => {
            return Err(VolumeError::Truncated {
                path: path.to_path_buf(),
                expected_bytes: vox_offset + expected,
                found_bytes: HEADER_LEN as u64 + k,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(VolumeError::Truncated {
                path: path.to_path_buf(),
                expected_bytes: vox_offset + expected,
                found_bytes: HEADER_LEN as u64,
            });
        }
        Err(e) => return Err(VolumeError::io(path, e)),
    }
    // Trailing bytes after the data are allowed by the format, so read exactly the data.
    let mut bytes = reserve_bytes(path, expected)?;
    let res = (&mut r).take(expected).read_to_end(&mut bytes);
    let truncated = |found: usize| VolumeError::Truncated {
        path: path.to_path_buf(),
        expected_bytes: vox_offset + expected,
        found_bytes: vox_offset + found as u64,
    };
    match res {
        Ok(_) if bytes.len() as u64 == expected => {}
        Ok(_) => return Err(truncated(bytes.len())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(truncated(bytes.len()));
        }
        Err(e) => return Err(VolumeError::io(path, e)),
    }

    if big_endian {
        for c in bytes.chunks_exact_mut(bpv) {
            c.reverse();
        }
    }
    let data = match datatype {
        DT_UINT8 => VoxelData::U8(bytes),
        DT_UINT16 => VoxelData::U16(
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        DT_INT16 => VoxelData::F32(
            bytes
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32)
                .collect(),
        ),
        _ => VoxelData::F32(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
    };
    let data = if apply_scaling {
        let mut v = data.to_f32();
        v.iter_mut().for_each(|x| *x = scl_slope * *x + scl_inter);
        VoxelData::F32(v)
    } else {
        data
    };
    let grid = Grid {
        dims: Dims::from(dims),
        voxel_size_mm,
        origin_mm,
    };
    Volume::new(grid, data).ok_or_else(|| bad("data does not fill the grid".into()))
}

/// Builds the 348-byte little-endian header (+ 4 zero extension bytes) for a volume.
fn build_header(volume: &Volume, path: &Path) -> Result<Vec<u8>, VolumeError> {
    let d = volume.dims();
    let too_big = |n: usize| n > i16::MAX as usize;
    if too_big(d.nx) || too_big(d.ny) || too_big(d.nz) || d.is_empty() {
        return Err(VolumeError::CannotWrite {
            path: path.to_path_buf(),
            reason: format!(
                "NIfTI-1 dimensions must be 1..=32767, got {:?}",
                d.as_array()
            ),
        });
    }
    let (datatype, bitpix) = match volume.data.dtype() {
        DType::Uint8 => (DT_UINT8, 8i16),
        DType::Uint16 => (DT_UINT16, 16),
        DType::Float32 => (DT_FLOAT32, 32),
    };
    let mut h = vec![0u8; HEADER_LEN + 4];
    let put = |h: &mut Vec<u8>, at: usize, b: &[u8]| h[at..at + b.len()].copy_from_slice(b);
    put(&mut h, 0, &348i32.to_le_bytes());
    h[38] = b'r'; // "regular", as the ANALYZE 7.5 legacy field expects
    let dim = [3i16, d.nx as i16, d.ny as i16, d.nz as i16, 1, 1, 1, 1];
    for (k, v) in dim.iter().enumerate() {
        put(&mut h, 40 + 2 * k, &v.to_le_bytes());
    }
    put(&mut h, 70, &datatype.to_le_bytes());
    put(&mut h, 72, &bitpix.to_le_bytes());
    let [vx, vy, vz] = volume.grid.voxel_size_mm;
    let pixdim = [1.0f32, vx as f32, vy as f32, vz as f32, 0.0, 0.0, 0.0, 0.0];
    for (k, v) in pixdim.iter().enumerate() {
        put(&mut h, 76 + 4 * k, &v.to_le_bytes());
    }
    put(&mut h, 108, &((HEADER_LEN + 4) as f32).to_le_bytes());
    put(&mut h, 112, &1.0f32.to_le_bytes()); // scl_slope: identity
    put(&mut h, 116, &0.0f32.to_le_bytes());
    h[123] = 2; // xyzt_units: mm
    let descrip = b"osteolab";
    put(&mut h, 148, descrip);
    let [ox, oy, oz] = volume.grid.origin_mm.map(|o| o as f32);
    put(&mut h, 252, &1i16.to_le_bytes()); // qform_code: scanner anatomical
    put(&mut h, 254, &1i16.to_le_bytes()); // sform_code
    // quatern_b, c, d = 0: identity rotation.
    put(&mut h, 268, &ox.to_le_bytes());
    put(&mut h, 272, &oy.to_le_bytes());
    put(&mut h, 276, &oz.to_le_bytes());
    let srow = [
        [vx as f32, 0.0, 0.0, ox],
        [0.0, vy as f32, 0.0, oy],
        [0.0, 0.0, vz as f32, oz],
    ];
    for (r, row) in srow.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            put(&mut h, 280 + 16 * r + 4 * c, &v.to_le_bytes());
        }
    }
    put(&mut h, 344, b"n+1\0");
    Ok(h)
}

/// Writes a volume as NIfTI-1 (little-endian, `vox_offset` 352, voxel sizes in mm, qform and
/// sform both the axis-aligned grid with `origin_mm` as translation). Gzip-compressed when the
/// file name ends in `.gz`. Written atomically.
pub fn write_nifti(volume: &Volume, path: &Path) -> Result<(), VolumeError> {
    if volume.dims().checked_len() != Some(volume.data.len()) {
        return Err(VolumeError::CannotWrite {
            path: path.to_path_buf(),
            reason: "dims do not match the data".into(),
        });
    }
    check_voxel_size(path, volume.grid.voxel_size_mm)?;
    let header = build_header(volume, path)?;
    let gz = is_gz(path);
    write_atomic(path, |w| {
        if gz {
            let mut enc = GzEncoder::new(w, Compression::fast());
            enc.write_all(&header)?;
            write_le(&mut enc, &volume.data)?;
            enc.finish()?;
            Ok(())
        } else {
            w.write_all(&header)?;
            write_le(w, &volume.data)
        }
    })
    .map_err(|e| VolumeError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(data: VoxelData, dims: Dims) -> Volume {
        Volume::new(
            Grid {
                dims,
                voxel_size_mm: [0.5, 0.25, 2.0],
                origin_mm: [-10.0, 5.5, 3.0],
            },
            data,
        )
        .unwrap()
    }

    #[test]
    fn nifti_round_trip_all_dtypes_plain_and_gz() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dims::new(4, 3, 5);
        let n = d.len();
        let vols = [
            sample(VoxelData::U8((0..n).map(|i| (i * 3) as u8).collect()), d),
            sample(
                VoxelData::U16((0..n).map(|i| (i * 1031) as u16).collect()),
                d,
            ),
            sample(
                VoxelData::F32((0..n).map(|i| i as f32 * 0.5 - 7.25).collect()),
                d,
            ),
        ];
        for (k, v) in vols.iter().enumerate() {
            for name in [format!("v{k}.nii"), format!("v{k}.nii.gz")] {
                let p = dir.path().join(name);
                write_nifti(v, &p).unwrap();
                let back = read_nifti(&p).unwrap();
                assert_eq!(&back, v, "{}", p.display());
            }
        }
        // The header is exactly 348 bytes + 4 extension bytes before the data.
        let bytes = std::fs::read(dir.path().join("v0.nii")).unwrap();
        assert_eq!(bytes.len(), 352 + n);
    }

    /// Builds a minimal header by hand in either byte order.
    fn hand_header(
        big_endian: bool,
        datatype: i16,
        dims: [i16; 3],
        slope: f32,
        inter: f32,
    ) -> Vec<u8> {
        let mut h = vec![0u8; 352];
        let mut put = |at: usize, le: &[u8]| {
            let mut b = le.to_vec();
            if big_endian {
                b.reverse();
            }
            h[at..at + b.len()].copy_from_slice(&b);
        };
        put(0, &348i32.to_le_bytes());
        put(40, &3i16.to_le_bytes());
        for (k, d) in dims.iter().enumerate() {
            put(42 + 2 * k, &d.to_le_bytes());
        }
        put(70, &datatype.to_le_bytes());
        put(80, &1.5f32.to_le_bytes());
        put(84, &1.5f32.to_le_bytes());
        put(88, &3.0f32.to_le_bytes());
        put(108, &352f32.to_le_bytes());
        put(112, &slope.to_le_bytes());
        put(116, &inter.to_le_bytes());
        put(252, &1i16.to_le_bytes());
        put(268, &1.0f32.to_le_bytes());
        put(272, &2.0f32.to_le_bytes());
        put(276, &3.0f32.to_le_bytes());
        h[344..348].copy_from_slice(b"n+1\0");
        h
    }

    #[test]
    fn big_endian_int16_with_scaling_reads_as_scaled_f32() {
        // int16 big-endian, slope 2, intercept -1024 (a CT-like rescale); qform origin (1,2,3).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("be.nii");
        let mut bytes = hand_header(true, DT_INT16, [2, 1, 2], 2.0, -1024.0);
        for v in [0i16, 512, -3, 32767] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        std::fs::write(&p, bytes).unwrap();
        let v = read_nifti(&p).unwrap();
        assert_eq!(v.dims(), Dims::new(2, 1, 2));
        assert_eq!(v.grid.voxel_size_mm, [1.5, 1.5, 3.0]);
        assert_eq!(v.grid.origin_mm, [1.0, 2.0, 3.0]);
        assert_eq!(v.data, VoxelData::F32(vec![-1024.0, 0.0, -1030.0, 64510.0]));
    }

    #[test]
    fn identity_scaling_keeps_integer_type() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("le.nii");
        let mut bytes = hand_header(false, DT_UINT16, [1, 2, 1], 1.0, 0.0);
        for v in [7u16, 65535] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        // Trailing bytes after the data are tolerated.
        bytes.extend_from_slice(&[0, 0]);
        std::fs::write(&p, bytes).unwrap();
        let v = read_nifti(&p).unwrap();
        assert_eq!(v.data, VoxelData::U16(vec![7, 65535]));
    }

    #[test]
    fn unsupported_nifti_datatype_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f64.nii");
        let mut bytes = hand_header(false, 64, [1, 1, 1], 0.0, 0.0);
        bytes.extend_from_slice(&1.0f64.to_le_bytes());
        std::fs::write(&p, bytes).unwrap();
        let err = read_nifti(&p).unwrap_err();
        assert!(
            matches!(err, VolumeError::UnsupportedNiftiType { code: 64, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("f64.nii") && err.to_string().contains("float64"));
    }

    #[test]
    fn truncated_nifti_data_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("short.nii");
        let mut bytes = hand_header(false, DT_UINT8, [4, 4, 4], 0.0, 0.0);
        bytes.extend_from_slice(&[1u8; 10]);
        std::fs::write(&p, bytes).unwrap();
        let err = read_nifti(&p).unwrap_err();
        assert!(
            matches!(
                err,
                VolumeError::Truncated {
                    expected_bytes: 416,
                    found_bytes: 362,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("short.nii"));
    }

    #[test]
    fn truncated_nifti_header_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stub.nii.gz");
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(&[0u8; 100]).unwrap();
        std::fs::write(&p, enc.finish().unwrap()).unwrap();
        let err = read_nifti(&p).unwrap_err();
        assert!(matches!(err, VolumeError::Truncated { .. }), "{err:?}");
        assert!(err.to_string().contains("stub.nii.gz"));
    }

    #[test]
    fn not_a_nifti_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("noise.nii");
        std::fs::write(&p, vec![7u8; 400]).unwrap();
        let err = read_nifti(&p).unwrap_err();
        assert!(matches!(err, VolumeError::BadNifti { .. }), "{err:?}");
        assert!(err.to_string().contains("noise.nii"));
    }

    #[test]
    fn nifti_zero_voxel_size_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("zero.nii");
        let mut bytes = hand_header(false, DT_UINT8, [1, 1, 1], 0.0, 0.0);
        bytes[84..88].copy_from_slice(&0f32.to_le_bytes());
        bytes.push(1);
        std::fs::write(&p, bytes).unwrap();
        let err = read_nifti(&p).unwrap_err();
        assert!(matches!(err, VolumeError::BadVoxelSize { .. }), "{err:?}");
        assert!(err.to_string().contains("zero.nii"));
    }

    #[test]
    fn nifti_non_positive_dims_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("negdim.nii");
        let bytes = hand_header(false, DT_UINT8, [2, -1, 1], 0.0, 0.0);
        std::fs::write(&p, bytes).unwrap();
        let err = read_nifti(&p).unwrap_err();
        assert!(matches!(err, VolumeError::BadDims { .. }), "{err:?}");
        assert!(err.to_string().contains("negdim.nii"));
    }
}
