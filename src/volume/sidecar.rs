//! The raw + JSON sidecar volume format (design §4).
//!
//! `NAME.json` = `{"dims": [nx, ny, nz], "voxel_size_mm": v or [vx, vy, vz],
//! "dtype": "uint8"|"uint16"|"float32", "origin_mm": [x, y, z] (optional), ...}` beside
//! `NAME.raw` or `NAME.raw.gz`: little-endian samples, x varying fastest
//! (`index = x + nx * (y + ny * z)`), no header. Unknown keys are ignored. The optional key
//! `"data_file"` names the data file (relative to the JSON's folder); the writer always sets
//! it so that a stale `NAME.raw` can never shadow a freshly written `NAME.raw.gz`. Without it
//! the reader takes `NAME.raw` if present, else `NAME.raw.gz`; a data file whose name ends in
//! `.gz` is gunzipped.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde_json::{Map, Value};

use super::error::{VolumeError, check_dims, check_voxel_size};
use super::grid::{DType, Dims, Grid, Volume, VoxelData};
use crate::atomic::write_atomic;

/// How the data file beside a sidecar is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RawCompression {
    /// `NAME.raw`: plain little-endian samples.
    #[default]
    None,
    /// `NAME.raw.gz`: the same bytes, gzip-compressed (fast compression level).
    Gzip,
}

/// The path of a sidecar's data file for a given compression: `NAME.json` -> `NAME.raw[.gz]`.
pub fn raw_path_for(json_path: &Path, compression: RawCompression) -> PathBuf {
    let base = strip_json(json_path);
    let mut s = base.into_os_string();
    s.push(match compression {
        RawCompression::None => ".raw",
        RawCompression::Gzip => ".raw.gz",
    });
    PathBuf::from(s)
}

fn strip_json(json_path: &Path) -> PathBuf {
    match json_path.extension() {
        Some(ext) if ext.eq_ignore_ascii_case("json") => json_path.with_extension(""),
        _ => json_path.to_path_buf(),
    }
}

/// Reads a volume from its JSON sidecar (and the `.raw` / `.raw.gz` beside it).
pub fn read_sidecar(json_path: &Path) -> Result<Volume, VolumeError> {
    let text = std::fs::read(json_path).map_err(|e| VolumeError::io(json_path, e))?;
    let value: Value = serde_json::from_slice(&text).map_err(|e| VolumeError::BadJson {
        path: json_path.to_path_buf(),
        message: e.to_string(),
    })?;
    let Value::Object(obj) = value else {
        return Err(VolumeError::BadJson {
            path: json_path.to_path_buf(),
            message: "the top level must be a JSON object".into(),
        });
    };
    let header = parse_header(json_path, &obj)?;
    let n = check_dims(json_path, header.dims, header.dtype.bytes_per_voxel())?;
    let raw_path = match &header.data_file {
        Some(name) => json_path
            .parent()
            .map(|d| d.join(name))
            .unwrap_or_else(|| PathBuf::from(name)),
        None => {
            let plain = raw_path_for(json_path, RawCompression::None);
            let gz = raw_path_for(json_path, RawCompression::Gzip);
            if plain.is_file() {
                plain
            } else if gz.is_file() {
                gz
            } else {
                return Err(VolumeError::io(
                    &plain,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!(
                            "data file not found (looked for {} and {})",
                            plain.display(),
                            gz.display()
                        ),
                    ),
                ));
            }
        }
    };
    let expected = (n * header.dtype.bytes_per_voxel()) as u64;
    let file = File::open(&raw_path).map_err(|e| VolumeError::io(&raw_path, e))?;
    if !is_gz(&raw_path) {
        // Check the size before allocating anything.
        let len = file
            .metadata()
            .map_err(|e| VolumeError::io(&raw_path, e))?
            .len();
        if len < expected {
            return Err(VolumeError::Truncated {
                path: raw_path,
                expected_bytes: expected,
                found_bytes: len,
            });
        }
        if len > expected {
            return Err(VolumeError::SizeMismatch {
                path: raw_path,
                dims: header.dims,
                bytes_per_voxel: header.dtype.bytes_per_voxel(),
                expected_bytes: expected,
                found_bytes: len,
            });
        }
    }
    let reader = BufReader::with_capacity(1 << 20, file);
    let bytes = if is_gz(&raw_path) {
        read_exact_len(
            &raw_path,
            MultiGzDecoder::new(reader),
            expected,
            header.dims,
            header.dtype,
        )?
    } else {
        read_exact_len(&raw_path, reader, expected, header.dims, header.dtype)?
    };
    let found_bytes = bytes.len() as u64;
    let data = decode_le(bytes, header.dtype);
    let grid = Grid {
        dims: Dims::from(header.dims),
        voxel_size_mm: header.voxel_size_mm,
        origin_mm: header.origin_mm,
    };
    Volume::new(grid, data).ok_or_else(|| VolumeError::SizeMismatch {
        path: raw_path.clone(),
        dims: header.dims,
        bytes_per_voxel: header.dtype.bytes_per_voxel(),
        expected_bytes: expected,
        found_bytes,
    })
}

fn is_gz(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

struct Header {
    dims: [usize; 3],
    voxel_size_mm: [f64; 3],
    dtype: DType,
    origin_mm: [f64; 3],
    data_file: Option<String>,
}

fn parse_header(path: &Path, obj: &Map<String, Value>) -> Result<Header, VolumeError> {
    let get = |key: &'static str| {
        obj.get(key).ok_or_else(|| VolumeError::MissingKey {
            path: path.to_path_buf(),
            key,
        })
    };
    let bad = |key: &'static str, message: &str| VolumeError::BadKey {
        path: path.to_path_buf(),
        key,
        message: message.to_string(),
    };

    let dims_v = get("dims")?;
    let dims_arr = dims_v
        .as_array()
        .filter(|a| a.len() == 3)
        .ok_or_else(|| bad("dims", "expected an array of three integers [nx, ny, nz]"))?;
    let mut dims = [0usize; 3];
    for (d, v) in dims.iter_mut().zip(dims_arr) {
        if let Some(i) = v.as_i64()
            && i < 0
        {
            return Err(VolumeError::BadDims {
                path: path.to_path_buf(),
                dims: dims_arr.iter().map(|v| v.as_i64().unwrap_or(-1)).collect(),
                reason: "dimensions must be positive".into(),
            });
        }
        let u = v
            .as_u64()
            .ok_or_else(|| bad("dims", "expected non-negative integers"))?;
        *d = usize::try_from(u).map_err(|_| bad("dims", "dimension too large"))?;
    }

    let vs = get("voxel_size_mm")?;
    let voxel_size_mm = match vs {
        Value::Number(n) => {
            let v = n
                .as_f64()
                .ok_or_else(|| bad("voxel_size_mm", "not a number"))?;
            [v; 3]
        }
        Value::Array(a) if a.len() == 3 => {
            let mut out = [0.0; 3];
            for (o, v) in out.iter_mut().zip(a) {
                *o = v
                    .as_f64()
                    .ok_or_else(|| bad("voxel_size_mm", "expected a number or three numbers"))?;
            }
            out
        }
        _ => {
            return Err(bad(
                "voxel_size_mm",
                "expected a number or an array of three numbers",
            ));
        }
    };
    check_voxel_size(path, voxel_size_mm)?;

    let dtype_v = get("dtype")?;
    let dtype_s = dtype_v
        .as_str()
        .ok_or_else(|| bad("dtype", "expected a string such as \"uint8\""))?;
    let dtype = DType::parse(dtype_s).ok_or_else(|| VolumeError::UnknownDType {
        path: path.to_path_buf(),
        dtype: dtype_s.to_string(),
    })?;

    let origin_mm = match obj.get("origin_mm") {
        None | Some(Value::Null) => [0.0; 3],
        Some(Value::Array(a)) if a.len() == 3 => {
            let mut out = [0.0; 3];
            for (o, v) in out.iter_mut().zip(a) {
                *o = v
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| bad("origin_mm", "expected three finite numbers"))?;
            }
            out
        }
        Some(_) => return Err(bad("origin_mm", "expected an array of three numbers")),
    };

    let data_file = match obj.get("data_file") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(bad("data_file", "expected a non-empty file name")),
    };

    Ok(Header {
        dims,
        voxel_size_mm,
        dtype,
        origin_mm,
        data_file,
    })
}

/// A buffer for `expected` bytes, or an error (not an abort) when it cannot be allocated.
pub(crate) fn reserve_bytes(path: &Path, expected: u64) -> Result<Vec<u8>, VolumeError> {
    let mut buf = Vec::new();
    usize::try_from(expected)
        .ok()
        .and_then(|n| buf.try_reserve_exact(n).ok())
        .ok_or_else(|| VolumeError::TooLarge {
            path: path.to_path_buf(),
            bytes: expected,
        })?;
    Ok(buf)
}

/// Reads exactly `expected` bytes; fewer is [`VolumeError::Truncated`], more is
/// [`VolumeError::SizeMismatch`] (with the full count). A gzip stream that ends early counts
/// as truncated.
pub(crate) fn read_exact_len(
    path: &Path,
    mut reader: impl Read,
    expected: u64,
    dims: [usize; 3],
    dtype: DType,
) -> Result<Vec<u8>, VolumeError> {
    let mut buf = reserve_bytes(path, expected)?;
    let result = (&mut reader).take(expected).read_to_end(&mut buf);
    let truncated = |found: usize| VolumeError::Truncated {
        path: path.to_path_buf(),
        expected_bytes: expected,
        found_bytes: found as u64,
    };
    match result {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(truncated(buf.len()));
        }
        Err(e) => return Err(VolumeError::io(path, e)),
    }
    if (buf.len() as u64) < expected {
        return Err(truncated(buf.len()));
    }
    let extra = match std::io::copy(&mut reader, &mut std::io::sink()) {
        Ok(k) => k,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 1,
        Err(e) => return Err(VolumeError::io(path, e)),
    };
    if extra > 0 {
        return Err(VolumeError::SizeMismatch {
            path: path.to_path_buf(),
            dims,
            bytes_per_voxel: dtype.bytes_per_voxel(),
            expected_bytes: expected,
            found_bytes: expected + extra,
        });
    }
    Ok(buf)
}

/// Little-endian bytes to samples. `bytes.len()` must be a multiple of the sample size.
pub(crate) fn decode_le(bytes: Vec<u8>, dtype: DType) -> VoxelData {
    match dtype {
        DType::Uint8 => VoxelData::U8(bytes),
        DType::Uint16 => VoxelData::U16(
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        DType::Float32 => VoxelData::F32(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
    }
}

/// Writes the samples little-endian, in chunks (no full second copy of the volume).
pub(crate) fn write_le(w: &mut dyn Write, data: &VoxelData) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 16;
    match data {
        VoxelData::U8(v) => w.write_all(v),
        VoxelData::U16(v) => {
            let mut buf = Vec::with_capacity(CHUNK * 2);
            for c in v.chunks(CHUNK) {
                buf.clear();
                buf.extend(c.iter().flat_map(|x| x.to_le_bytes()));
                w.write_all(&buf)?;
            }
            Ok(())
        }
        VoxelData::F32(v) => {
            let mut buf = Vec::with_capacity(CHUNK * 4);
            for c in v.chunks(CHUNK) {
                buf.clear();
                buf.extend(c.iter().flat_map(|x| x.to_le_bytes()));
                w.write_all(&buf)?;
            }
            Ok(())
        }
    }
}

/// Writes `NAME.json` and `NAME.raw` (or `NAME.raw.gz`) atomically: the data file first, then
/// the sidecar, each through a temporary file renamed into place.
pub fn write_sidecar(
    volume: &Volume,
    json_path: &Path,
    compression: RawCompression,
) -> Result<(), VolumeError> {
    let dims = volume.dims();
    if volume.dims().checked_len() != Some(volume.data.len()) {
        return Err(VolumeError::CannotWrite {
            path: json_path.to_path_buf(),
            reason: format!(
                "dims {:?} do not match the {} samples held",
                dims.as_array(),
                volume.data.len()
            ),
        });
    }
    check_voxel_size(json_path, volume.grid.voxel_size_mm)?;
    let raw_path = raw_path_for(json_path, compression);
    write_atomic(&raw_path, |w| match compression {
        RawCompression::None => write_le(w, &volume.data),
        RawCompression::Gzip => {
            let mut enc = GzEncoder::new(w, Compression::fast());
            write_le(&mut enc, &volume.data)?;
            enc.finish()?;
            Ok(())
        }
    })
    .map_err(|e| VolumeError::io(&raw_path, e))?;

    let [vx, vy, vz] = volume.grid.voxel_size_mm;
    let voxel_size = if vx == vy && vx == vz {
        serde_json::json!(vx)
    } else {
        serde_json::json!([vx, vy, vz])
    };
    let data_file = raw_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doc = serde_json::json!({
        "dims": dims.as_array(),
        "voxel_size_mm": voxel_size,
        "dtype": volume.data.dtype().name(),
        "origin_mm": volume.grid.origin_mm,
        "order": "x-fastest: index = x + nx*(y + ny*z)",
        "endianness": "little",
        "data_file": data_file,
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| VolumeError::CannotWrite {
        path: json_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(json_path, |w| {
        w.write_all(text.as_bytes())?;
        w.write_all(b"\n")
    })
    .map_err(|e| VolumeError::io(json_path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_u16() -> Volume {
        let grid = Grid {
            dims: Dims::new(3, 2, 4),
            voxel_size_mm: [0.5, 0.5, 0.75],
            origin_mm: [1.0, -2.0, 3.5],
        };
        let data = VoxelData::U16((0..24u16).map(|i| i * 1000 + 7).collect());
        Volume::new(grid, data).unwrap()
    }

    fn write_json(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    fn assert_names(err: &VolumeError, file: &Path) {
        let msg = err.to_string();
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(msg.contains(&*name), "message {msg:?} must name {name}");
    }

    #[test]
    fn sidecar_round_trip_raw_and_gz_all_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let base = small_u16();
        let vols = [
            base.clone(),
            Volume::new(
                base.grid,
                VoxelData::U8((0..24u8).map(|i| i * 10).collect()),
            )
            .unwrap(),
            Volume::new(
                base.grid,
                VoxelData::F32((0..24).map(|i| i as f32 * -0.25 + 1e-3).collect()),
            )
            .unwrap(),
        ];
        for (k, vol) in vols.iter().enumerate() {
            for comp in [RawCompression::None, RawCompression::Gzip] {
                let p = dir.path().join(format!("v{k}-{comp:?}.json"));
                write_sidecar(vol, &p, comp).unwrap();
                assert!(raw_path_for(&p, comp).is_file());
                let back = read_sidecar(&p).unwrap();
                assert_eq!(&back, vol);
            }
        }
    }

    #[test]
    fn data_file_key_beats_a_stale_raw() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.json");
        let vol = small_u16();
        // A stale plain .raw of the right size but other content.
        std::fs::write(raw_path_for(&p, RawCompression::None), vec![0u8; 48]).unwrap();
        write_sidecar(&vol, &p, RawCompression::Gzip).unwrap();
        assert_eq!(read_sidecar(&p).unwrap(), vol);
    }

    #[test]
    fn sidecar_without_data_file_key_finds_raw_gz_and_ignores_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        write_json(
            &p,
            r#"{"dims": [2, 2, 1], "voxel_size_mm": [0.1, 0.2, 0.3], "dtype": "uint8", "comment": "x"}"#,
        );
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&[1, 2, 3, 4]).unwrap();
        std::fs::write(dir.path().join("s.raw.gz"), enc.finish().unwrap()).unwrap();
        let v = read_sidecar(&p).unwrap();
        assert_eq!(v.data, VoxelData::U8(vec![1, 2, 3, 4]));
        assert_eq!(v.grid.voxel_size_mm, [0.1, 0.2, 0.3]);
        assert_eq!(v.grid.origin_mm, [0.0; 3]);
    }

    #[test]
    fn truncated_raw_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        write_json(
            &p,
            r#"{"dims": [4, 4, 4], "voxel_size_mm": 1, "dtype": "uint16"}"#,
        );
        let raw = dir.path().join("t.raw");
        std::fs::write(&raw, vec![0u8; 100]).unwrap();
        let err = read_sidecar(&p).unwrap_err();
        assert!(
            matches!(
                err,
                VolumeError::Truncated {
                    expected_bytes: 128,
                    found_bytes: 100,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_names(&err, &raw);
    }

    #[test]
    fn truncated_gzip_stream_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tg.json");
        let vol = Volume::new(
            Grid::isotropic(Dims::new(64, 64, 16), 1.0),
            VoxelData::U8((0..65536u32).map(|i| (i * 7919 % 251) as u8).collect()),
        )
        .unwrap();
        write_sidecar(&vol, &p, RawCompression::Gzip).unwrap();
        let gz = raw_path_for(&p, RawCompression::Gzip);
        let bytes = std::fs::read(&gz).unwrap();
        std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_sidecar(&p).unwrap_err();
        assert!(matches!(err, VolumeError::Truncated { .. }), "{err:?}");
        assert_names(&err, &gz);
    }

    #[test]
    fn dims_not_matching_byte_count_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_json(
            &p,
            r#"{"dims": [2, 2, 2], "voxel_size_mm": 1, "dtype": "uint8"}"#,
        );
        let raw = dir.path().join("m.raw");
        std::fs::write(&raw, vec![0u8; 27]).unwrap();
        let err = read_sidecar(&p).unwrap_err();
        assert!(
            matches!(
                err,
                VolumeError::SizeMismatch {
                    expected_bytes: 8,
                    found_bytes: 27,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_names(&err, &raw);
    }

    #[test]
    fn unknown_dtype_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.json");
        write_json(
            &p,
            r#"{"dims": [1, 1, 1], "voxel_size_mm": 1, "dtype": "int64"}"#,
        );
        let err = read_sidecar(&p).unwrap_err();
        assert!(
            matches!(&err, VolumeError::UnknownDType { dtype, .. } if dtype == "int64"),
            "{err:?}"
        );
        assert_names(&err, &p);
    }

    #[test]
    fn non_positive_voxel_size_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        for (k, vs) in ["0", "-0.5", "[1, 1, 0]"].iter().enumerate() {
            let p = dir.path().join(format!("vs{k}.json"));
            write_json(
                &p,
                &format!(r#"{{"dims": [1, 1, 1], "voxel_size_mm": {vs}, "dtype": "uint8"}}"#),
            );
            let err = read_sidecar(&p).unwrap_err();
            assert!(matches!(err, VolumeError::BadVoxelSize { .. }), "{err:?}");
            assert_names(&err, &p);
        }
    }

    #[test]
    fn non_finite_voxel_size_is_rejected_by_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nf.json");
        let mut vol = small_u16();
        vol.grid.voxel_size_mm[1] = f64::NAN;
        let err = write_sidecar(&vol, &p, RawCompression::None).unwrap_err();
        assert!(matches!(err, VolumeError::BadVoxelSize { .. }), "{err:?}");
        assert_names(&err, &p);
        assert!(!p.exists());
    }

    #[test]
    fn missing_sidecar_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("dims", r#"{"voxel_size_mm": 1, "dtype": "uint8"}"#),
            ("voxel_size_mm", r#"{"dims": [1, 1, 1], "dtype": "uint8"}"#),
            ("dtype", r#"{"dims": [1, 1, 1], "voxel_size_mm": 1}"#),
        ];
        for (key, text) in cases {
            let p = dir.path().join(format!("no-{key}.json"));
            write_json(&p, text);
            let err = read_sidecar(&p).unwrap_err();
            assert!(
                matches!(&err, VolumeError::MissingKey { key: k, .. } if *k == key),
                "{err:?}"
            );
            assert_names(&err, &p);
        }
    }

    #[test]
    fn bad_json_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.json");
        write_json(&p, r#"{"dims": [1, 1, 1], "voxel_size_mm": "#);
        let err = read_sidecar(&p).unwrap_err();
        assert!(matches!(err, VolumeError::BadJson { .. }), "{err:?}");
        assert_names(&err, &p);
    }

    #[test]
    fn zero_or_negative_dims_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        for (k, d) in ["[0, 1, 1]", "[2, -1, 1]"].iter().enumerate() {
            let p = dir.path().join(format!("zd{k}.json"));
            write_json(
                &p,
                &format!(r#"{{"dims": {d}, "voxel_size_mm": 1, "dtype": "uint8"}}"#),
            );
            let err = read_sidecar(&p).unwrap_err();
            assert!(matches!(err, VolumeError::BadDims { .. }), "{err:?}");
            assert_names(&err, &p);
        }
    }

    #[test]
    fn overflowing_dims_are_rejected_without_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.json");
        write_json(
            &p,
            r#"{"dims": [18446744073709551615, 2, 2], "voxel_size_mm": 1, "dtype": "uint8"}"#,
        );
        std::fs::write(dir.path().join("huge.raw"), [0u8]).unwrap();
        let err = read_sidecar(&p).unwrap_err();
        assert!(matches!(err, VolumeError::BadDims { .. }), "{err:?}");
        assert_names(&err, &p);
    }

    #[test]
    fn huge_dims_fail_cleanly_without_allocating() {
        // 10^15 bytes announced, a few bytes present: plain raw is caught by its file size,
        // gzip either cannot reserve the buffer or runs out of data.
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"dims": [100000, 100000, 100000], "voxel_size_mm": 1, "dtype": "uint8"}"#;
        let p = dir.path().join("big.json");
        write_json(&p, text);
        std::fs::write(dir.path().join("big.raw"), [0u8; 8]).unwrap();
        let err = read_sidecar(&p).unwrap_err();
        assert!(matches!(err, VolumeError::Truncated { .. }), "{err:?}");
        assert_names(&err, &dir.path().join("big.raw"));

        let pg = dir.path().join("biggz.json");
        write_json(&pg, text);
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(&[0u8; 8]).unwrap();
        std::fs::write(dir.path().join("biggz.raw.gz"), enc.finish().unwrap()).unwrap();
        let err = read_sidecar(&pg).unwrap_err();
        assert!(
            matches!(
                err,
                VolumeError::TooLarge { .. } | VolumeError::Truncated { .. }
            ),
            "{err:?}"
        );
        assert_names(&err, &dir.path().join("biggz.raw.gz"));
    }

    #[test]
    fn missing_data_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lonely.json");
        write_json(
            &p,
            r#"{"dims": [1, 1, 1], "voxel_size_mm": 1, "dtype": "uint8"}"#,
        );
        let err = read_sidecar(&p).unwrap_err();
        assert!(matches!(err, VolumeError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("lonely.raw"), "{err}");
    }

    #[test]
    fn missing_sidecar_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("absent.json");
        let err = read_sidecar(&p).unwrap_err();
        assert!(matches!(err, VolumeError::Io { .. }), "{err:?}");
        assert_names(&err, &p);
    }
}
