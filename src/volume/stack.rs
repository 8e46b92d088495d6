//! Image stacks: a folder of 2-D grayscale slices (PNG or TIFF, 8 or 16 bits), one file per z.
//!
//! Slices are ordered by the natural order of their file names (digit runs compared as numbers,
//! so `s2.png` < `s10.png`); image columns are x, rows are y, slices are z. Image files carry no
//! trustworthy physical spacing, so the voxel size is given by the caller
//! ([`StackReadOptions::voxel_size_mm`], 1 mm by default).

use std::cmp::Ordering;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, ImageError, ImageFormat, ImageReader, Luma};
use rayon::prelude::*;

use super::error::{VolumeError, check_dims, check_voxel_size};
use super::grid::{Dims, Grid, Volume, VoxelData};
use crate::atomic::write_bytes_atomic;

/// Options for [`read_image_stack`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StackReadOptions {
    /// Voxel size (mm) along x, y, z; images do not carry it. Default 1 mm.
    pub voxel_size_mm: [f64; 3],
}

impl Default for StackReadOptions {
    fn default() -> Self {
        Self {
            voxel_size_mm: [1.0; 3],
        }
    }
}

/// Sample depth of written PNG slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StackBitDepth {
    #[default]
    Eight,
    Sixteen,
}

/// Compares two file names in natural order: runs of ASCII digits compare by numeric value
/// (without overflow: leading zeros stripped, then by length, then digit by digit), other
/// characters compare as text; full ties fall back to plain byte order.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = trim_zeros(&ab[si..i]);
            let nb = trim_zeros(&bb[sj..j]);
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            let ord = ab[i].cmp(&bb[j]);
            if ord != Ordering::Equal {
                return ord;
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j)).then_with(|| ab.cmp(bb))
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let k = d.iter().position(|&c| c != b'0').unwrap_or(d.len());
    &d[k..]
}

fn is_slice_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
    let ext_ok = path.extension().is_some_and(|e| {
        let e = e.to_string_lossy().to_ascii_lowercase();
        matches!(e.as_str(), "png" | "tif" | "tiff")
    });
    !hidden && ext_ok && path.is_file()
}

/// The slice files of a folder (`.png`, `.tif`, `.tiff`, not hidden), in natural name order.
pub fn list_slice_files(dir: &Path) -> Result<Vec<PathBuf>, VolumeError> {
    let entries = std::fs::read_dir(dir).map_err(|e| VolumeError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| VolumeError::io(dir, e))?;
        let p = entry.path();
        if is_slice_file(&p) {
            files.push(p);
        }
    }
    files.sort_by(|a, b| {
        let na = a
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let nb = b
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        natural_cmp(&na, &nb)
    });
    Ok(files)
}

enum Slice {
    L8(Vec<u8>),
    L16(Vec<u16>),
}

fn image_error(path: &Path, e: ImageError) -> VolumeError {
    match e {
        ImageError::IoError(io) => VolumeError::io(path, io),
        ImageError::Unsupported(u) => VolumeError::UnsupportedPixelType {
            path: path.to_path_buf(),
            what: u.to_string(),
        },
        other => VolumeError::Image {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

fn decode_slice(path: &Path) -> Result<([usize; 2], Slice), VolumeError> {
    let reader = ImageReader::open(path)
        .map_err(|e| VolumeError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| VolumeError::io(path, e))?;
    let img = reader.decode().map_err(|e| image_error(path, e))?;
    let size = [img.width() as usize, img.height() as usize];
    match img {
        DynamicImage::ImageLuma8(b) => Ok((size, Slice::L8(b.into_raw()))),
        DynamicImage::ImageLuma16(b) => Ok((size, Slice::L16(b.into_raw()))),
        other => Err(VolumeError::UnsupportedPixelType {
            path: path.to_path_buf(),
            what: format!(
                "{:?} (only 8- or 16-bit single-channel grayscale slices are read)",
                other.color()
            ),
        }),
    }
}

/// Reads a folder of grayscale slices into a volume (u8 for 8-bit slices, u16 for 16-bit).
/// All slices must have the same size and bit depth.
pub fn read_image_stack(dir: &Path, options: &StackReadOptions) -> Result<Volume, VolumeError> {
    check_voxel_size(dir, options.voxel_size_mm)?;
    let files = list_slice_files(dir)?;
    if files.is_empty() {
        return Err(VolumeError::EmptySliceFolder {
            path: dir.to_path_buf(),
            expected: "8/16-bit grayscale .png, .tif or .tiff files",
        });
    }
    let slices: Vec<Result<([usize; 2], Slice), VolumeError>> =
        files.par_iter().map(|p| decode_slice(p)).collect();
    let mut slices_ok = Vec::with_capacity(slices.len());
    for s in slices {
        slices_ok.push(s?);
    }
    let [nx, ny] = slices_ok[0].0;
    let first_is_16 = matches!(slices_ok[0].1, Slice::L16(_));
    for (k, (size, s)) in slices_ok.iter().enumerate() {
        if *size != [nx, ny] {
            return Err(VolumeError::MixedSliceSizes {
                path: files[k].clone(),
                first: files[0].clone(),
                expected: [nx, ny],
                found: *size,
            });
        }
        if matches!(s, Slice::L16(_)) != first_is_16 {
            let bits = |b: bool| if b { 16 } else { 8 };
            return Err(VolumeError::UnsupportedPixelType {
                path: files[k].clone(),
                what: format!(
                    "{}-bit slice in a stack whose first slice ({}) is {}-bit",
                    bits(!first_is_16),
                    files[0].display(),
                    bits(first_is_16)
                ),
            });
        }
    }
    let nz = slices_ok.len();
    let bpv = if first_is_16 { 2 } else { 1 };
    let n = check_dims(dir, [nx, ny, nz], bpv)?;
    let data = if first_is_16 {
        let mut v = Vec::with_capacity(n);
        for (_, s) in slices_ok {
            if let Slice::L16(d) = s {
                v.extend_from_slice(&d);
            }
        }
        VoxelData::U16(v)
    } else {
        let mut v = Vec::with_capacity(n);
        for (_, s) in slices_ok {
            if let Slice::L8(d) = s {
                v.extend_from_slice(&d);
            }
        }
        VoxelData::U8(v)
    };
    let grid = Grid {
        dims: Dims::new(nx, ny, nz),
        voxel_size_mm: options.voxel_size_mm,
        origin_mm: [0.0; 3],
    };
    Volume::new(grid, data).ok_or_else(|| VolumeError::Image {
        path: dir.to_path_buf(),
        message: "slice data does not fill the grid".into(),
    })
}

/// Maps the volume's samples to the output depth. Integer samples that fit the depth are
/// written unchanged; anything else (floats, u16 values above 255 for an 8-bit stack) is
/// linearly rescaled from the finite value range [min, max] to [0, 2^bits - 1] (NaN -> 0).
fn to_depth(volume: &Volume, depth: StackBitDepth) -> Vec<u16> {
    let max_out = match depth {
        StackBitDepth::Eight => 255.0,
        StackBitDepth::Sixteen => 65535.0,
    };
    match (&volume.data, depth) {
        (VoxelData::U8(v), _) => v.iter().map(|&x| x as u16).collect(),
        (VoxelData::U16(v), StackBitDepth::Sixteen) => v.clone(),
        (VoxelData::U16(v), StackBitDepth::Eight) if v.iter().all(|&x| x <= 255) => v.clone(),
        _ => {
            let (lo, hi) = volume.value_range().unwrap_or((0.0, 0.0));
            let scale = if hi > lo { max_out / (hi - lo) } else { 0.0 };
            (0..volume.data.len())
                .map(|i| {
                    let x = volume.data.get_f64(i);
                    if x.is_nan() {
                        0
                    } else {
                        ((x - lo) * scale).round().clamp(0.0, max_out) as u16
                    }
                })
                .collect()
        }
    }
}

/// Writes the volume as PNG slices `slice_0000.png`, `slice_0001.png`, ... (at least four
/// digits) into `dir` (created if needed), each file written atomically. Older
/// `slice_NNNN.png` files in `dir` that are not part of this stack are removed afterwards, so
/// reading the folder back gives exactly this volume. See [`StackBitDepth`] and the value
/// mapping rule on `to_depth`: integer data that fits is written unchanged, other data is
/// linearly rescaled to the full range. Returns the written paths in z order.
pub fn write_png_stack(
    volume: &Volume,
    dir: &Path,
    depth: StackBitDepth,
) -> Result<Vec<PathBuf>, VolumeError> {
    let d = volume.dims();
    if d.checked_len() != Some(volume.data.len()) || d.is_empty() {
        return Err(VolumeError::CannotWrite {
            path: dir.to_path_buf(),
            reason: "empty volume or dims not matching the data".into(),
        });
    }
    let (Ok(w), Ok(h)) = (u32::try_from(d.nx), u32::try_from(d.ny)) else {
        return Err(VolumeError::CannotWrite {
            path: dir.to_path_buf(),
            reason: format!("slice {}x{} too large for PNG", d.nx, d.ny),
        });
    };
    std::fs::create_dir_all(dir).map_err(|e| VolumeError::io(dir, e))?;
    let samples = to_depth(volume, depth);
    let width = (d.nz.saturating_sub(1)).to_string().len().max(4);
    let plane = d.nx * d.ny;
    let paths: Vec<PathBuf> = (0..d.nz)
        .map(|z| dir.join(format!("slice_{z:0width$}.png")))
        .collect();
    paths
        .par_iter()
        .enumerate()
        .try_for_each(|(z, path)| -> Result<(), VolumeError> {
            let s = &samples[z * plane..(z + 1) * plane];
            let img = match depth {
                StackBitDepth::Eight => {
                    let buf: ImageBuffer<Luma<u8>, Vec<u8>> =
                        ImageBuffer::from_raw(w, h, s.iter().map(|&x| x as u8).collect())
                            .ok_or_else(|| VolumeError::CannotWrite {
                                path: path.clone(),
                                reason: "slice buffer size mismatch".into(),
                            })?;
                    DynamicImage::ImageLuma8(buf)
                }
                StackBitDepth::Sixteen => {
                    let buf: ImageBuffer<Luma<u16>, Vec<u16>> =
                        ImageBuffer::from_raw(w, h, s.to_vec()).ok_or_else(|| {
                            VolumeError::CannotWrite {
                                path: path.clone(),
                                reason: "slice buffer size mismatch".into(),
                            }
                        })?;
                    DynamicImage::ImageLuma16(buf)
                }
            };
            let mut bytes = Cursor::new(Vec::new());
            img.write_to(&mut bytes, ImageFormat::Png)
                .map_err(|e| image_error(path, e))?;
            write_bytes_atomic(path, bytes.get_ref()).map_err(|e| VolumeError::io(path, e))
        })?;
    // Remove stale slices of an earlier, longer stack.
    let entries = std::fs::read_dir(dir).map_err(|e| VolumeError::io(dir, e))?;
    for entry in entries.flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_ours = name
            .strip_prefix("slice_")
            .and_then(|r| r.strip_suffix(".png"))
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()));
        if is_ours && !paths.contains(&p) {
            std::fs::remove_file(&p).map_err(|e| VolumeError::io(&p, e))?;
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol_u8(dims: Dims) -> Volume {
        let n = dims.len();
        Volume::new(
            Grid::isotropic(dims, 1.0),
            VoxelData::U8((0..n).map(|i| (i * 37 % 256) as u8).collect()),
        )
        .unwrap()
    }

    #[test]
    fn natural_order_compares_numbers_by_value() {
        let mut names = vec![
            "s10.png",
            "s2.png",
            "s1.png",
            "s002b.png",
            "s001.png",
            "a.png",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "a.png",
                "s001.png",
                "s1.png",
                "s2.png",
                "s002b.png",
                "s10.png"
            ]
        );
        // Digit runs far beyond u64 do not overflow.
        assert_eq!(
            natural_cmp("x99999999999999999999999", "x100000000000000000000000"),
            Ordering::Less
        );
    }

    #[test]
    fn png_stack_round_trip_8_and_16_bit() {
        let dir = tempfile::tempdir().unwrap();
        let v8 = vol_u8(Dims::new(5, 3, 4));
        let p8 = dir.path().join("s8");
        write_png_stack(&v8, &p8, StackBitDepth::Eight).unwrap();
        let opts = StackReadOptions {
            voxel_size_mm: [0.1, 0.1, 0.2],
        };
        let back = read_image_stack(&p8, &opts).unwrap();
        assert_eq!(back.data, v8.data);
        assert_eq!(back.grid.voxel_size_mm, [0.1, 0.1, 0.2]);

        let d = Dims::new(4, 6, 3);
        let v16 = Volume::new(
            Grid::isotropic(d, 1.0),
            VoxelData::U16((0..d.len()).map(|i| (i * 2711 % 65536) as u16).collect()),
        )
        .unwrap();
        let p16 = dir.path().join("s16");
        write_png_stack(&v16, &p16, StackBitDepth::Sixteen).unwrap();
        let back = read_image_stack(&p16, &StackReadOptions::default()).unwrap();
        assert_eq!(back.data, v16.data);
        assert_eq!(back.dims(), d);
    }

    #[test]
    fn float_volume_is_rescaled_to_full_range() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dims::new(3, 1, 1);
        let v = Volume::new(
            Grid::isotropic(d, 1.0),
            VoxelData::F32(vec![-1000.0, 0.0, 1000.0]),
        )
        .unwrap();
        write_png_stack(&v, dir.path(), StackBitDepth::Eight).unwrap();
        let back = read_image_stack(dir.path(), &StackReadOptions::default()).unwrap();
        assert_eq!(back.data, VoxelData::U8(vec![0, 128, 255]));
    }

    #[test]
    fn rewriting_a_shorter_stack_removes_stale_slices() {
        let dir = tempfile::tempdir().unwrap();
        write_png_stack(
            &vol_u8(Dims::new(2, 2, 5)),
            dir.path(),
            StackBitDepth::Eight,
        )
        .unwrap();
        let short = vol_u8(Dims::new(2, 2, 2));
        write_png_stack(&short, dir.path(), StackBitDepth::Eight).unwrap();
        let back = read_image_stack(dir.path(), &StackReadOptions::default()).unwrap();
        assert_eq!(back.data, short.data);
    }

    #[test]
    fn slices_are_ordered_numerically_not_lexically() {
        let dir = tempfile::tempdir().unwrap();
        // Names whose lexical order (1, 10, 2) differs from numeric order (1, 2, 10).
        for (z, name) in [(0u8, "img1.png"), (1, "img2.png"), (2, "img10.png")] {
            let buf: ImageBuffer<Luma<u8>, Vec<u8>> =
                ImageBuffer::from_raw(2, 1, vec![z * 10, z * 10 + 1]).unwrap();
            buf.save(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let v = read_image_stack(dir.path(), &StackReadOptions::default()).unwrap();
        assert_eq!(v.data, VoxelData::U8(vec![0, 1, 10, 11, 20, 21]));
    }

    #[test]
    fn tiff_16_bit_slices_are_read() {
        let dir = tempfile::tempdir().unwrap();
        for z in 0..2u16 {
            let buf: ImageBuffer<Luma<u16>, Vec<u16>> =
                ImageBuffer::from_raw(2, 2, vec![z, 300 + z, 4000, 65535]).unwrap();
            buf.save(dir.path().join(format!("t{z}.tif"))).unwrap();
        }
        let v = read_image_stack(dir.path(), &StackReadOptions::default()).unwrap();
        assert_eq!(
            v.data,
            VoxelData::U16(vec![0, 300, 4000, 65535, 1, 301, 4000, 65535])
        );
    }

    #[test]
    fn empty_slice_folder_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("readme.txt"), "no images").unwrap();
        let err = read_image_stack(dir.path(), &StackReadOptions::default()).unwrap_err();
        assert!(
            matches!(err, VolumeError::EmptySliceFolder { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&*dir.path().to_string_lossy()));
    }

    #[test]
    fn mixed_size_slices_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let a: ImageBuffer<Luma<u8>, Vec<u8>> = ImageBuffer::from_raw(2, 2, vec![0; 4]).unwrap();
        let b: ImageBuffer<Luma<u8>, Vec<u8>> = ImageBuffer::from_raw(3, 2, vec![0; 6]).unwrap();
        a.save(dir.path().join("s0.png")).unwrap();
        b.save(dir.path().join("s1.png")).unwrap();
        let err = read_image_stack(dir.path(), &StackReadOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                VolumeError::MixedSliceSizes {
                    expected: [2, 2],
                    found: [3, 2],
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("s1.png"), "{err}");
    }

    #[test]
    fn rgb_png_is_an_unsupported_pixel_type() {
        let dir = tempfile::tempdir().unwrap();
        let rgb: ImageBuffer<image::Rgb<u8>, Vec<u8>> =
            ImageBuffer::from_raw(2, 2, vec![10; 12]).unwrap();
        rgb.save(dir.path().join("colour.png")).unwrap();
        let err = read_image_stack(dir.path(), &StackReadOptions::default()).unwrap_err();
        assert!(
            matches!(err, VolumeError::UnsupportedPixelType { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("colour.png"), "{err}");
    }

    #[test]
    fn corrupt_png_is_an_image_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let err = read_image_stack(dir.path(), &StackReadOptions::default()).unwrap_err();
        assert!(
            matches!(err, VolumeError::Image { .. } | VolumeError::Io { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("bad.png"), "{err}");
    }

    #[test]
    fn stack_voxel_size_must_be_positive() {
        let dir = tempfile::tempdir().unwrap();
        write_png_stack(
            &vol_u8(Dims::new(2, 2, 2)),
            dir.path(),
            StackBitDepth::Eight,
        )
        .unwrap();
        let opts = StackReadOptions {
            voxel_size_mm: [1.0, f64::INFINITY, 1.0],
        };
        let err = read_image_stack(dir.path(), &opts).unwrap_err();
        assert!(matches!(err, VolumeError::BadVoxelSize { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&*dir.path().to_string_lossy()),
            "{err}"
        );
    }
}
