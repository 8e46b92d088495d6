//! Cell fields on a voxel grid as a legacy VTK structured-points file (Kitware, "VTK File
//! Formats", legacy format version 3.0), the form ParaView opens directly: one cell per voxel,
//! points at the voxel corners, big-endian binary scalars. The write is atomic.

use std::io;
use std::path::Path;

use super::Grid;
use crate::atomic::write_atomic;

/// The values of one cell field, one per voxel of the grid (x fastest).
pub enum CellValues<'a> {
    Float(&'a [f32]),
    Int(&'a [i32]),
}

/// One named cell field.
pub struct CellField<'a> {
    /// The field's name in the file (no spaces).
    pub name: &'a str,
    pub values: CellValues<'a>,
}

impl CellValues<'_> {
    fn len(&self) -> usize {
        match self {
            CellValues::Float(v) => v.len(),
            CellValues::Int(v) => v.len(),
        }
    }
}

/// Writes `fields` on `grid` to `path` under the header line `title` (newlines dropped, cut
/// to 200 characters). Fails with `InvalidInput` when a field's length is not the voxel count
/// or its name contains whitespace.
pub fn write_cell_fields(
    path: &Path,
    grid: &Grid,
    title: &str,
    fields: &[CellField],
) -> io::Result<()> {
    let d = grid.dims;
    for f in fields {
        if f.values.len() != d.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cell field {} has {} values for {} voxels",
                    f.name,
                    f.values.len(),
                    d.len()
                ),
            ));
        }
        if f.name.is_empty() || f.name.contains(char::is_whitespace) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cell field name {:?} must be one word", f.name),
            ));
        }
    }
    let h = grid.voxel_size_mm;
    // Points are the voxel corners: origin_mm is the centre of voxel 0.
    let origin = [
        grid.origin_mm[0] - h[0] / 2.0,
        grid.origin_mm[1] - h[1] / 2.0,
        grid.origin_mm[2] - h[2] / 2.0,
    ];
    let title: String = title.chars().filter(|c| *c != '\n').take(200).collect();
    write_atomic(path, |w| {
        writeln!(w, "# vtk DataFile Version 3.0")?;
        writeln!(w, "{title}")?;
        writeln!(w, "BINARY")?;
        writeln!(w, "DATASET STRUCTURED_POINTS")?;
        writeln!(w, "DIMENSIONS {} {} {}", d.nx + 1, d.ny + 1, d.nz + 1)?;
        writeln!(w, "ORIGIN {} {} {}", origin[0], origin[1], origin[2])?;
        writeln!(w, "SPACING {} {} {}", h[0], h[1], h[2])?;
        writeln!(w, "CELL_DATA {}", d.len())?;
        for f in fields {
            match f.values {
                CellValues::Float(values) => {
                    writeln!(w, "SCALARS {} float 1", f.name)?;
                    writeln!(w, "LOOKUP_TABLE default")?;
                    for v in values {
                        w.write_all(&v.to_be_bytes())?;
                    }
                }
                CellValues::Int(values) => {
                    writeln!(w, "SCALARS {} int 1", f.name)?;
                    writeln!(w, "LOOKUP_TABLE default")?;
                    for v in values {
                        w.write_all(&v.to_be_bytes())?;
                    }
                }
            }
            writeln!(w)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Dims;

    #[test]
    fn structured_points_file_holds_the_header_and_big_endian_cell_values() {
        let grid = Grid::isotropic(Dims::new(2, 1, 1), 0.5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.vtk");
        write_cell_fields(
            &path,
            &grid,
            "two\ncells",
            &[
                CellField {
                    name: "a",
                    values: CellValues::Float(&[1.5, -2.0]),
                },
                CellField {
                    name: "b",
                    values: CellValues::Int(&[7, -1]),
                },
            ],
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("twocells\n"));
        assert!(text.contains("DIMENSIONS 3 2 2\n"));
        assert!(text.contains("ORIGIN -0.25 -0.25 -0.25\n"));
        assert!(text.contains("CELL_DATA 2\n"));
        let after = |key: &str| {
            let at = bytes
                .windows(key.len())
                .position(|w| w == key.as_bytes())
                .unwrap();
            &bytes[at + key.len()..at + key.len() + 8]
        };
        let a = after("SCALARS a float 1\nLOOKUP_TABLE default\n");
        assert_eq!(f32::from_be_bytes(a[..4].try_into().unwrap()), 1.5);
        assert_eq!(f32::from_be_bytes(a[4..].try_into().unwrap()), -2.0);
        let b = after("SCALARS b int 1\nLOOKUP_TABLE default\n");
        assert_eq!(i32::from_be_bytes(b[4..].try_into().unwrap()), -1);
    }

    #[test]
    fn a_field_of_the_wrong_length_or_name_is_refused() {
        let grid = Grid::isotropic(Dims::new(2, 1, 1), 0.5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.vtk");
        for (name, values) in [("a", &[1.0f32][..]), ("two words", &[1.0, 2.0][..])] {
            let err = write_cell_fields(
                &path,
                &grid,
                "t",
                &[CellField {
                    name,
                    values: CellValues::Float(values),
                }],
            )
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        assert!(!path.exists());
    }
}
