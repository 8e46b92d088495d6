//! Mesh exporters: binary STL, binary little-endian PLY, Wavefront OBJ and legacy VTK
//! POLYDATA (binary, big-endian, as the legacy format requires). Every file is written
//! atomically through [`crate::atomic::write_atomic`]; coordinates are in mm.
//!
//! Formats (as read by ParaView, MeshLab, Blender):
//! - STL: 80-byte header (not starting with "solid"), u32 triangle count, then per triangle a
//!   unit face normal, three vertices (f32 LE) and a zero u16 attribute.
//! - PLY 1.0 (Turk 1994): `x y z nx ny nz` and one `float` property per scalar field, faces as
//!   `list uchar int vertex_indices`.
//! - OBJ: `v`, `vn` and `f a//a b//b c//c` lines (1-based); scalar fields are not representable
//!   in OBJ and are omitted.
//! - VTK legacy 3.0 ("VTK File Formats", Kitware): `DATASET POLYDATA`, `POINTS n float`,
//!   `POLYGONS m 4m`, `POINT_DATA n` with `NORMALS Normals float` and one
//!   `SCALARS name float 1` per field.
//!
//! Field names are written with every character outside `[A-Za-z0-9_.-]` replaced by `_`, as
//! PLY properties and VTK array names are whitespace-delimited tokens.

use std::io::{self, Write};
use std::path::Path;

use super::{MeshError, SurfaceMesh};
use crate::atomic::write_atomic;

/// Writes `mesh` in the format named by the extension of `path` (`stl`, `ply`, `obj`, `vtk`,
/// case-insensitive). Any other extension is [`MeshError::UnknownFormat`].
pub fn write_mesh(mesh: &SurfaceMesh, path: &Path) -> Result<(), MeshError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("stl") => write_stl(mesh, path),
        Some("ply") => write_ply(mesh, path),
        Some("obj") => write_obj(mesh, path),
        Some("vtk") => write_vtk(mesh, path),
        _ => Err(MeshError::UnknownFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// Binary STL.
pub fn write_stl(mesh: &SurfaceMesh, path: &Path) -> Result<(), MeshError> {
    check(mesh, path)?;
    let count = u32::try_from(mesh.triangle_count()).map_err(|_| MeshError::InvalidMesh {
        path: path.to_path_buf(),
        reason: "more than 2^32 triangles do not fit binary STL".into(),
    })?;
    write(path, |w| {
        let mut header = [b' '; 80];
        let title = b"osteolab binary STL, units mm";
        header[..title.len()].copy_from_slice(title);
        w.write_all(&header)?;
        w.write_all(&count.to_le_bytes())?;
        let mut buf = Vec::with_capacity(50 * 4096);
        for chunk in mesh.indices.chunks(3 * 4096) {
            buf.clear();
            for t in chunk.chunks_exact(3) {
                let p = [0, 1, 2].map(|k| mesh.positions[t[k] as usize]);
                for v in std::iter::once(unit_face_normal(p)).chain(p) {
                    for c in v {
                        buf.extend_from_slice(&c.to_le_bytes());
                    }
                }
                buf.extend_from_slice(&0u16.to_le_bytes());
            }
            w.write_all(&buf)?;
        }
        Ok(())
    })
}

/// Binary little-endian PLY with normals and every scalar field as a vertex property.
pub fn write_ply(mesh: &SurfaceMesh, path: &Path) -> Result<(), MeshError> {
    check(mesh, path)?;
    check_i32(mesh, path)?;
    let normals = output_normals(mesh);
    let names = field_names(mesh);
    write(path, |w| {
        let mut h = String::new();
        h.push_str("ply\nformat binary_little_endian 1.0\n");
        h.push_str("comment osteolab surface mesh, units mm\n");
        h.push_str(&format!("element vertex {}\n", mesh.vertex_count()));
        for p in ["x", "y", "z", "nx", "ny", "nz"] {
            h.push_str(&format!("property float {p}\n"));
        }
        for n in &names {
            h.push_str(&format!("property float {n}\n"));
        }
        h.push_str(&format!("element face {}\n", mesh.triangle_count()));
        h.push_str("property list uchar int vertex_indices\nend_header\n");
        w.write_all(h.as_bytes())?;
        let mut buf = Vec::new();
        for start in (0..mesh.vertex_count()).step_by(4096) {
            buf.clear();
            for i in start..(start + 4096).min(mesh.vertex_count()) {
                for c in mesh.positions[i].into_iter().chain(normals[i]) {
                    buf.extend_from_slice(&c.to_le_bytes());
                }
                for (_, vals) in &mesh.scalars {
                    buf.extend_from_slice(&vals[i].to_le_bytes());
                }
            }
            w.write_all(&buf)?;
        }
        for chunk in mesh.indices.chunks(3 * 4096) {
            buf.clear();
            for t in chunk.chunks_exact(3) {
                buf.push(3u8);
                for &i in t {
                    buf.extend_from_slice(&(i as i32).to_le_bytes());
                }
            }
            w.write_all(&buf)?;
        }
        Ok(())
    })
}

/// Wavefront OBJ with per-vertex normals (shortest round-trip decimal floats).
pub fn write_obj(mesh: &SurfaceMesh, path: &Path) -> Result<(), MeshError> {
    check(mesh, path)?;
    let normals = output_normals(mesh);
    write(path, |w| {
        writeln!(w, "# osteolab surface mesh, units mm")?;
        writeln!(
            w,
            "# {} vertices, {} triangles",
            mesh.vertex_count(),
            mesh.triangle_count()
        )?;
        for p in &mesh.positions {
            writeln!(w, "v {} {} {}", p[0], p[1], p[2])?;
        }
        for n in &normals {
            writeln!(w, "vn {} {} {}", n[0], n[1], n[2])?;
        }
        for t in mesh.indices.chunks_exact(3) {
            let [a, b, c] = [t[0] as u64 + 1, t[1] as u64 + 1, t[2] as u64 + 1];
            writeln!(w, "f {a}//{a} {b}//{b} {c}//{c}")?;
        }
        Ok(())
    })
}

/// Legacy VTK POLYDATA, binary big-endian, with point normals and scalar fields.
pub fn write_vtk(mesh: &SurfaceMesh, path: &Path) -> Result<(), MeshError> {
    check(mesh, path)?;
    check_i32(mesh, path)?;
    let normals = output_normals(mesh);
    let names = field_names(mesh);
    let n = mesh.vertex_count();
    let m = mesh.triangle_count();
    write(path, |w| {
        write!(
            w,
            "# vtk DataFile Version 3.0\nosteolab surface mesh, units mm\nBINARY\n\
             DATASET POLYDATA\nPOINTS {n} float\n"
        )?;
        write_be_f32(w, mesh.positions.iter().flatten().copied())?;
        write!(w, "\nPOLYGONS {m} {}\n", 4 * m)?;
        let mut buf = Vec::new();
        for chunk in mesh.indices.chunks(3 * 4096) {
            buf.clear();
            for t in chunk.chunks_exact(3) {
                buf.extend_from_slice(&3i32.to_be_bytes());
                for &i in t {
                    buf.extend_from_slice(&(i as i32).to_be_bytes());
                }
            }
            w.write_all(&buf)?;
        }
        write!(w, "\nPOINT_DATA {n}\nNORMALS Normals float\n")?;
        write_be_f32(w, normals.iter().flatten().copied())?;
        for (name, (_, vals)) in names.iter().zip(&mesh.scalars) {
            write!(w, "\nSCALARS {name} float 1\nLOOKUP_TABLE default\n")?;
            write_be_f32(w, vals.iter().copied())?;
        }
        writeln!(w)?;
        Ok(())
    })
}

fn write_be_f32(w: &mut dyn Write, vals: impl Iterator<Item = f32>) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4 * 16384);
    for v in vals {
        buf.extend_from_slice(&v.to_be_bytes());
        if buf.len() >= 4 * 16384 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)
}

fn write(path: &Path, f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), MeshError> {
    write_atomic(path, f).map_err(|source| MeshError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Structural checks before writing: whole triangles, indices in range, one normal (or none)
/// and one value of every field per vertex.
fn check(mesh: &SurfaceMesh, path: &Path) -> Result<(), MeshError> {
    let invalid = |reason: String| MeshError::InvalidMesh {
        path: path.to_path_buf(),
        reason,
    };
    let n = mesh.vertex_count();
    if !mesh.indices.len().is_multiple_of(3) {
        return Err(invalid(format!(
            "{} indices is not a whole number of triangles",
            mesh.indices.len()
        )));
    }
    if let Some(&i) = mesh.indices.iter().find(|&&i| i as usize >= n) {
        return Err(invalid(format!(
            "vertex index {i} out of range ({n} vertices)"
        )));
    }
    if !mesh.normals.is_empty() && mesh.normals.len() != n {
        return Err(invalid(format!(
            "{} normals for {n} vertices",
            mesh.normals.len()
        )));
    }
    for (name, vals) in &mesh.scalars {
        if vals.len() != n {
            return Err(invalid(format!(
                "field `{name}` has {} values for {n} vertices",
                vals.len()
            )));
        }
    }
    Ok(())
}

/// PLY and VTK store indices as signed 32-bit integers.
fn check_i32(mesh: &SurfaceMesh, path: &Path) -> Result<(), MeshError> {
    if mesh.vertex_count() > i32::MAX as usize || mesh.indices.len() / 3 * 4 > i32::MAX as usize {
        return Err(MeshError::InvalidMesh {
            path: path.to_path_buf(),
            reason: "too many vertices or triangles for 32-bit signed indices".into(),
        });
    }
    Ok(())
}

/// The mesh normals, or normalised area-weighted face normals when the mesh has none.
fn output_normals(mesh: &SurfaceMesh) -> Vec<[f32; 3]> {
    if mesh.normals.len() == mesh.vertex_count() {
        return mesh.normals.clone();
    }
    mesh.area_weighted_normals()
        .into_iter()
        .map(|n| {
            let l = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
            if l > 0.0 { n.map(|c| c / l) } else { [0.0; 3] }
        })
        .collect()
}

fn unit_face_normal(p: [[f32; 3]; 3]) -> [f32; 3] {
    let e1 = [p[1][0] - p[0][0], p[1][1] - p[0][1], p[1][2] - p[0][2]];
    let e2 = [p[2][0] - p[0][0], p[2][1] - p[0][1], p[2][2] - p[0][2]];
    let n = [
        e1[1] * e2[2] - e1[2] * e2[1],
        e1[2] * e2[0] - e1[0] * e2[2],
        e1[0] * e2[1] - e1[1] * e2[0],
    ];
    let l = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
    if l > 0.0 { n.map(|c| c / l) } else { [0.0; 3] }
}

/// File-safe, unique field names (`[A-Za-z0-9_.-]`, never empty, never a reserved PLY vertex
/// property).
fn field_names(mesh: &SurfaceMesh) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, (name, _)) in mesh.scalars.iter().enumerate() {
        let mut s: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if s.is_empty() {
            s = format!("scalar{k}");
        }
        if ["x", "y", "z", "nx", "ny", "nz"].contains(&s.as_str()) || out.contains(&s) {
            s = format!("{s}_{k}");
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{ExtractParams, extract_surface};
    use crate::volume::{BoneMask, Dims, Grid};

    /// A small irregular surface with two fields, one with an awkward name.
    fn sample_mesh() -> SurfaceMesh {
        let grid = Grid {
            dims: Dims::new(6, 5, 4),
            voxel_size_mm: [0.02, 0.03, 0.05],
            origin_mm: [-1.0, 2.0, 0.5],
        };
        let mask = BoneMask::from_fn(grid, |x, y, z| (x * 7 + y * 3 + z * 5) % 4 != 0 && x > 0);
        let mut mesh = extract_surface(&mask, &ExtractParams::default());
        let n = mesh.vertex_count();
        mesh.set_scalar("sed_mpa", (0..n).map(|i| i as f32 * 0.5).collect())
            .unwrap();
        mesh.set_scalar("strain energy", (0..n).map(|i| -(i as f32)).collect())
            .unwrap();
        assert!(mesh.triangle_count() > 50 && mesh.is_watertight());
        mesh
    }

    fn f32_le(b: &[u8], at: usize) -> f32 {
        f32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Splits a file into its text header (up to and including `end`) and the rest.
    fn split_header<'a>(bytes: &'a [u8], end: &str) -> (String, &'a [u8]) {
        let pos = bytes
            .windows(end.len())
            .position(|w| w == end.as_bytes())
            .expect("header end");
        let cut = pos + end.len();
        (
            String::from_utf8(bytes[..cut].to_vec()).unwrap(),
            &bytes[cut..],
        )
    }

    /// STL re-read: size = 84 + 50 m bytes, header does not start with "solid", every
    /// triangle's vertices equal the mesh's (bit-exact f32) and its normal is a unit vector
    /// agreeing with the winding.
    #[test]
    fn stl_round_trip_is_exact() {
        let mesh = sample_mesh();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.STL");
        write_mesh(&mesh, &path).unwrap();
        let b = std::fs::read(&path).unwrap();
        assert!(!b.starts_with(b"solid"));
        let m = u32::from_le_bytes(b[80..84].try_into().unwrap()) as usize;
        assert_eq!(m, mesh.triangle_count());
        assert_eq!(b.len(), 84 + 50 * m);
        for (t, tri) in mesh.indices.chunks_exact(3).enumerate() {
            let at = 84 + 50 * t;
            let n: [f32; 3] = std::array::from_fn(|c| f32_le(&b, at + 4 * c));
            assert!((n.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
            assert_eq!(
                n,
                unit_face_normal([tri[0], tri[1], tri[2]].map(|i| mesh.positions[i as usize]))
            );
            for (k, &vi) in tri.iter().enumerate() {
                let v: [f32; 3] = std::array::from_fn(|c| f32_le(&b, at + 12 + 12 * k + 4 * c));
                assert_eq!(v, mesh.positions[vi as usize]);
            }
        }
    }

    /// PLY re-read: header declares the vertex/face counts and the properties in order; the
    /// binary body has exactly the declared size and reproduces positions, normals, fields and
    /// faces bit-exactly.
    #[test]
    fn ply_round_trip_is_exact() {
        let mesh = sample_mesh();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ply");
        write_mesh(&mesh, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (header, body) = split_header(&bytes, "end_header\n");
        let lines: Vec<&str> = header.lines().collect();
        assert_eq!(lines[0], "ply");
        assert_eq!(lines[1], "format binary_little_endian 1.0");
        let count = |el: &str| -> usize {
            let l = lines
                .iter()
                .find(|l| l.starts_with(&format!("element {el} ")))
                .unwrap();
            l.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let (n, m) = (count("vertex"), count("face"));
        assert_eq!((n, m), (mesh.vertex_count(), mesh.triangle_count()));
        let props: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("property float "))
            .collect();
        assert_eq!(
            props,
            ["x", "y", "z", "nx", "ny", "nz", "sed_mpa", "strain_energy"]
        );
        assert!(lines.contains(&"property list uchar int vertex_indices"));
        let stride = 4 * props.len();
        assert_eq!(body.len(), n * stride + m * 13);
        for i in 0..n {
            let v: Vec<f32> = (0..props.len())
                .map(|k| f32_le(body, i * stride + 4 * k))
                .collect();
            assert_eq!(&v[0..3], &mesh.positions[i]);
            assert_eq!(&v[3..6], &mesh.normals[i]);
            assert_eq!(v[6], mesh.scalars[0].1[i]);
            assert_eq!(v[7], mesh.scalars[1].1[i]);
        }
        let faces = &body[n * stride..];
        for (t, tri) in mesh.indices.chunks_exact(3).enumerate() {
            assert_eq!(faces[13 * t], 3);
            for (k, &vi) in tri.iter().enumerate() {
                let at = 13 * t + 1 + 4 * k;
                let i = i32::from_le_bytes(faces[at..at + 4].try_into().unwrap());
                assert_eq!(i as u32, vi);
            }
        }
    }

    /// OBJ re-read: counts of v / vn / f lines, values parse back to the same f32, faces are
    /// 1-based `v//vn` with equal indices.
    #[test]
    fn obj_round_trip_is_exact() {
        let mesh = sample_mesh();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.obj");
        write_mesh(&mesh, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let (mut v, mut vn, mut f) = (Vec::new(), Vec::new(), Vec::new());
        for line in text.lines() {
            let mut it = line.split_whitespace();
            match it.next() {
                Some("v") => v.push(it.map(|s| s.parse::<f32>().unwrap()).collect::<Vec<_>>()),
                Some("vn") => vn.push(it.map(|s| s.parse::<f32>().unwrap()).collect::<Vec<_>>()),
                Some("f") => {
                    for tok in it {
                        let (a, b) = tok.split_once("//").unwrap();
                        assert_eq!(a, b);
                        f.push(a.parse::<u32>().unwrap() - 1);
                    }
                }
                Some("#") | None => {}
                Some(other) => panic!("unexpected OBJ record {other}"),
            }
        }
        assert_eq!(v.len(), mesh.vertex_count());
        assert_eq!(vn.len(), mesh.vertex_count());
        assert_eq!(f, mesh.indices);
        for (a, b) in v.iter().zip(&mesh.positions) {
            assert_eq!(a.as_slice(), b);
        }
        for (a, b) in vn.iter().zip(&mesh.normals) {
            assert_eq!(a.as_slice(), b);
        }
    }

    /// VTK re-read: the legacy header lines, `POINTS n float`, `POLYGONS m 4m`, `POINT_DATA n`,
    /// `NORMALS`, one `SCALARS`/`LOOKUP_TABLE` pair per field, and big-endian data equal to the
    /// mesh; the file ends right after the last array.
    #[test]
    fn vtk_round_trip_is_exact() {
        let mesh = sample_mesh();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.vtk");
        write_mesh(&mesh, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (n, m) = (mesh.vertex_count(), mesh.triangle_count());
        let mut at = 0usize;
        let line = |at: &mut usize| -> String {
            let end = bytes[*at..].iter().position(|&c| c == b'\n').unwrap() + *at;
            let s = String::from_utf8(bytes[*at..end].to_vec()).unwrap();
            *at = end + 1;
            s
        };
        let be_f32 = |at: &mut usize, count: usize| -> Vec<f32> {
            let v = (0..count)
                .map(|k| {
                    f32::from_be_bytes(bytes[*at + 4 * k..*at + 4 * k + 4].try_into().unwrap())
                })
                .collect();
            *at += 4 * count;
            v
        };
        assert_eq!(line(&mut at), "# vtk DataFile Version 3.0");
        line(&mut at);
        assert_eq!(line(&mut at), "BINARY");
        assert_eq!(line(&mut at), "DATASET POLYDATA");
        assert_eq!(line(&mut at), format!("POINTS {n} float"));
        let pts = be_f32(&mut at, 3 * n);
        assert_eq!(
            pts,
            mesh.positions.iter().flatten().copied().collect::<Vec<_>>()
        );
        assert_eq!(line(&mut at), "");
        assert_eq!(line(&mut at), format!("POLYGONS {m} {}", 4 * m));
        for tri in mesh.indices.chunks_exact(3) {
            let rec: Vec<i32> = (0..4)
                .map(|k| i32::from_be_bytes(bytes[at + 4 * k..at + 4 * k + 4].try_into().unwrap()))
                .collect();
            assert_eq!(rec, [3, tri[0] as i32, tri[1] as i32, tri[2] as i32]);
            at += 16;
        }
        assert_eq!(line(&mut at), "");
        assert_eq!(line(&mut at), format!("POINT_DATA {n}"));
        assert_eq!(line(&mut at), "NORMALS Normals float");
        let nrm = be_f32(&mut at, 3 * n);
        assert_eq!(
            nrm,
            mesh.normals.iter().flatten().copied().collect::<Vec<_>>()
        );
        for (name, (_, vals)) in ["sed_mpa", "strain_energy"].iter().zip(&mesh.scalars) {
            assert_eq!(line(&mut at), "");
            assert_eq!(line(&mut at), format!("SCALARS {name} float 1"));
            assert_eq!(line(&mut at), "LOOKUP_TABLE default");
            assert_eq!(&be_f32(&mut at, n), vals);
        }
        assert_eq!(line(&mut at), "");
        assert_eq!(at, bytes.len());
    }

    #[test]
    fn unknown_extension_is_an_error_naming_the_file() {
        let mesh = sample_mesh();
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.stlx", "a", "a.gltf"] {
            let path = dir.path().join(name);
            let err = write_mesh(&mesh, &path).unwrap_err();
            assert!(matches!(err, MeshError::UnknownFormat { .. }));
            assert!(err.to_string().contains(name), "{err}");
            assert!(!path.exists());
        }
    }

    /// A broken mesh is refused before anything is written, and a previous good file survives.
    #[test]
    fn invalid_mesh_is_refused_and_keeps_the_previous_file() {
        let mesh = sample_mesh();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keep.ply");
        write_mesh(&mesh, &path).unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut bad = mesh.clone();
        bad.indices.push(u32::MAX);
        bad.indices.extend([0, 1]);
        let err = write_mesh(&bad, &path).unwrap_err();
        assert!(matches!(err, MeshError::InvalidMesh { .. }), "{err}");
        assert!(err.to_string().contains("keep.ply"));
        assert_eq!(std::fs::read(&path).unwrap(), good);
    }

    #[test]
    fn unwritable_path_is_an_io_error_naming_the_file() {
        let mesh = sample_mesh();
        let path = Path::new("/nonexistent-dir-osteolab/out.stl");
        let err = write_mesh(&mesh, path).unwrap_err();
        assert!(matches!(err, MeshError::Io { .. }));
        assert!(err.to_string().contains("out.stl"));
    }

    /// A mesh without normals is exported with area-weighted unit normals.
    #[test]
    fn missing_normals_are_filled_with_unit_face_normals() {
        let mut mesh = sample_mesh();
        mesh.normals.clear();
        let nrm = output_normals(&mesh);
        assert_eq!(nrm.len(), mesh.vertex_count());
        for n in nrm {
            assert!((n.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}
