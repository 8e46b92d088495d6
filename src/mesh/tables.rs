//! The marching-cubes case table, generated (not typed in) from a face rule that makes the
//! surface watertight and 2-manifold.
//!
//! Why generate it: the classic Lorensen & Cline (1987) table resolves ambiguous faces
//! differently in neighbouring cells (its complementary-case symmetry), which leaves holes
//! (Dürst 1988; Nielson & Hamann 1991). Here every cube face is contoured *on its own*, from its
//! four corner signs only, with one fixed rule for ambiguous faces ("join inside": bone corners
//! on a face diagonal are connected, i.e. bone is face-diagonally (18-) connected and background
//! 6-connected; the same fixed-choice idea as the implicit disambiguation of Montani, Scateni &
//! Scopigno 1994, The Visual Computer 10:353). A face is shared by
//! two cells that therefore produce the same segments on it, in opposite directions. The
//! segments of a cell chain into closed loops (every crossed cube edge lies on two faces: one
//! segment enters it, one leaves), and each loop is filled by the max-min-quality triangulation
//! whose interior diagonals never join two points of a common cube face, so no diagonal can
//! coincide with an edge of a neighbouring cell. Such a triangulation exists for every loop of
//! all 256 cases (checked by a test), so no extra vertices are needed.
//! Result: every mesh edge is shared by exactly two triangles with opposite orientation.
//!
//! Conventions. Corner `k` of a cell sits at `(k & 1, (k >> 1) & 1, (k >> 2) & 1)`. Edge
//! `d * 4 + j` runs along axis `d` from the corner whose other two coordinates are
//! `(j & 1, j >> 1)` (in increasing axis order). A corner is inside when its value is at or
//! above the iso level; the loops run counter-clockwise seen from outside (from the background),
//! so triangles have outward normals.

use std::sync::OnceLock;

/// Triangles (as triples of cube edges, in output winding) for one of the 256 corner sign
/// patterns.
#[derive(Clone, Debug, Default)]
pub(crate) struct Case {
    pub tris: Vec<[u8; 3]>,
}

/// The 256 cases, built once.
pub(crate) fn cases() -> &'static [Case; 256] {
    static TABLE: OnceLock<Box<[Case; 256]>> = OnceLock::new();
    TABLE.get_or_init(|| Box::new(std::array::from_fn(|c| build_case(c as u8))))
}

/// Corner position in the unit cube.
pub(crate) fn corner_pos(k: usize) -> [f64; 3] {
    [(k & 1) as f64, ((k >> 1) & 1) as f64, ((k >> 2) & 1) as f64]
}

/// The two axes other than `d`, in increasing order.
fn other_axes(d: usize) -> (usize, usize) {
    match d {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    }
}

/// The end corners `(a, b)` of edge `e`, `a` the lower one.
pub(crate) fn edge_corners(e: usize) -> (usize, usize) {
    let d = e / 4;
    let j = e % 4;
    let (u, v) = other_axes(d);
    let a = ((j & 1) << u) | ((j >> 1) << v);
    (a, a | (1 << d))
}

/// The edge joining two corners that differ in exactly one coordinate.
fn edge_between(c1: usize, c2: usize) -> usize {
    let diff = c1 ^ c2;
    debug_assert!(diff.count_ones() == 1);
    let d = diff.trailing_zeros() as usize;
    let a = c1.min(c2);
    let (u, v) = other_axes(d);
    d * 4 + ((a >> u) & 1) + 2 * ((a >> v) & 1)
}

/// The two cube faces `(axis, side)` an edge lies on.
fn edge_faces(e: usize) -> [(usize, usize); 2] {
    let d = e / 4;
    let j = e % 4;
    let (u, v) = other_axes(d);
    [(u, j & 1), (v, j >> 1)]
}

/// True when two distinct edges lie on a common cube face.
fn share_face(e1: usize, e2: usize) -> bool {
    let f1 = edge_faces(e1);
    let f2 = edge_faces(e2);
    f1.iter().any(|f| f2.contains(f))
}

fn edge_mid(e: usize) -> [f64; 3] {
    let (a, b) = edge_corners(e);
    let pa = corner_pos(a);
    let pb = corner_pos(b);
    [
        0.5 * (pa[0] + pb[0]),
        0.5 * (pa[1] + pb[1]),
        0.5 * (pa[2] + pb[2]),
    ]
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
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

/// Oriented segments `(from_edge, to_edge)` of the contour on every face for `case`.
fn face_segments(case: u8) -> Vec<(usize, usize)> {
    let inside = |k: usize| (case >> k) & 1 == 1;
    let mut segs = Vec::new();
    for axis in 0..3 {
        let u = (axis + 1) % 3;
        let v = (axis + 2) % 3;
        for side in 0..2 {
            let corners: [usize; 4] = [(0, 0), (1, 0), (1, 1), (0, 1)]
                .map(|(cu, cv)| (side << axis) | (cu << u) | (cv << v));
            let mut normal = [0.0; 3];
            normal[axis] = if side == 1 { 1.0 } else { -1.0 };
            let fin = corners.map(inside);
            let fedge: [usize; 4] =
                std::array::from_fn(|k| edge_between(corners[k], corners[(k + 1) % 4]));
            let crossed: Vec<usize> = (0..4).filter(|&k| fin[k] != fin[(k + 1) % 4]).collect();
            // Pairs (k1, k2) of face-edge slots; the corners after k1 up to k2 (cyclically) are
            // all on one side, and the first of them is the test corner.
            let pairs: Vec<(usize, usize)> = match crossed.len() {
                2 => vec![(crossed[0], crossed[1])],
                4 => (0..4)
                    .filter(|&i| !fin[i])
                    .map(|i| ((i + 3) % 4, i))
                    .collect(),
                _ => Vec::new(),
            };
            for (k1, k2) in pairs {
                let test = (k1 + 1) % 4;
                let (e1, e2) = (fedge[k1], fedge[k2]);
                let p = edge_mid(e1);
                let q = edge_mid(e2);
                let c = corner_pos(corners[test]);
                let s = dot(normal, cross(sub(q, p), sub(c, p)));
                // Seen from outside the cube, inside corners lie to the right of the segment.
                let inside_right = s < 0.0;
                if inside_right == fin[test] {
                    segs.push((e1, e2));
                } else {
                    segs.push((e2, e1));
                }
            }
        }
    }
    segs
}

/// Closed loops of cube edges for `case`, each in counter-clockwise order seen from outside.
pub(crate) fn case_loops(case: u8) -> Vec<Vec<usize>> {
    let segs = face_segments(case);
    let mut next = [usize::MAX; 12];
    for &(a, b) in &segs {
        debug_assert_eq!(next[a], usize::MAX, "edge {a} left twice in case {case}");
        next[a] = b;
    }
    let mut seen = [false; 12];
    let mut loops = Vec::new();
    for start in 0..12 {
        if next[start] == usize::MAX || seen[start] {
            continue;
        }
        let mut lp = Vec::new();
        let mut e = start;
        while !seen[e] {
            seen[e] = true;
            lp.push(e);
            e = next[e];
        }
        debug_assert_eq!(e, start, "open contour in case {case}");
        loops.push(lp);
    }
    loops
}

/// Shape quality of triangle (a, b, c) in `[-1, 1]`: 1 for equilateral, negative when it faces
/// against the loop normal `n`.
fn tri_quality(a: [f64; 3], b: [f64; 3], c: [f64; 3], n: [f64; 3]) -> f64 {
    let area2 = dot(cross(sub(b, a), sub(c, a)), n);
    let l2 = dot(sub(b, a), sub(b, a)) + dot(sub(c, b), sub(c, b)) + dot(sub(a, c), sub(a, c));
    if l2 <= 0.0 {
        return -1.0;
    }
    2.0 * 3f64.sqrt() * area2 / l2
}

/// Max-min quality triangulation of a loop using only "safe" chords (no two points of one cube
/// face), by dynamic programming over sub-polygons, on the edge-midpoint geometry. `None` if no
/// safe triangulation exists or the best one has a triangle facing backwards (neither happens
/// for any of the 256 cases).
fn triangulate_loop(lp: &[usize]) -> Option<Vec<[usize; 3]>> {
    let n = lp.len();
    let pts: Vec<[f64; 3]> = lp.iter().map(|&e| edge_mid(e)).collect();
    // Newell normal of the loop.
    let mut nrm = [0.0; 3];
    for i in 0..n {
        nrm = {
            let c = cross(pts[i], pts[(i + 1) % n]);
            [nrm[0] + c[0], nrm[1] + c[1], nrm[2] + c[2]]
        };
    }
    let len = dot(nrm, nrm).sqrt();
    if len == 0.0 {
        return None;
    }
    let nrm = [nrm[0] / len, nrm[1] / len, nrm[2] / len];
    let chord_ok =
        |i: usize, j: usize| j == i + 1 || (i == 0 && j == n - 1) || !share_face(lp[i], lp[j]);
    let mut best = vec![vec![f64::NEG_INFINITY; n]; n];
    let mut split = vec![vec![usize::MAX; n]; n];
    for i in 0..n - 1 {
        best[i][i + 1] = f64::INFINITY;
    }
    for gap in 2..n {
        for i in 0..n - gap {
            let j = i + gap;
            if !chord_ok(i, j) {
                continue;
            }
            for k in i + 1..j {
                let q = best[i][k]
                    .min(best[k][j])
                    .min(tri_quality(pts[i], pts[k], pts[j], nrm));
                if q > best[i][j] {
                    best[i][j] = q;
                    split[i][j] = k;
                }
            }
        }
    }
    if best[0][n - 1] <= 0.0 {
        return None;
    }
    let mut tris = Vec::with_capacity(n - 2);
    let mut stack = vec![(0, n - 1)];
    while let Some((i, j)) = stack.pop() {
        if j <= i + 1 {
            continue;
        }
        let k = split[i][j];
        tris.push([lp[i], lp[k], lp[j]]);
        stack.push((i, k));
        stack.push((k, j));
    }
    Some(tris)
}

fn build_case(case: u8) -> Case {
    let mut out = Case::default();
    for lp in case_loops(case) {
        // `every_loop_has_a_safe_triangulation` checks that this never skips a loop.
        if let Some(tris) = triangulate_loop(&lp) {
            out.tris
                .extend(tris.into_iter().map(|t| t.map(|e| e as u8)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn edges_and_corners_are_consistent() {
        for e in 0..12 {
            let (a, b) = edge_corners(e);
            assert_eq!(edge_between(a, b), e);
            assert_eq!((a ^ b).count_ones(), 1);
        }
    }

    /// Every crossed edge of every case is used by exactly one loop, and only crossed edges are.
    #[test]
    fn every_case_has_closed_loops_through_exactly_the_crossed_edges() {
        for case in 0..=255u8 {
            let loops = case_loops(case);
            let mut used = [0u32; 12];
            for lp in &loops {
                assert!(lp.len() >= 3, "case {case}: loop {lp:?}");
                for &e in lp {
                    used[e] += 1;
                }
            }
            for (e, &count) in used.iter().enumerate() {
                let (a, b) = edge_corners(e);
                let crossed = ((case >> a) & 1) != ((case >> b) & 1);
                assert_eq!(count, u32::from(crossed), "case {case} edge {e}");
            }
        }
    }

    /// Within a case, each edge of the triangulation between two cube-edge points is either a
    /// loop side on a cube face (used once, to be matched by the neighbour cell) or an interior
    /// chord used twice in opposite directions. Chords never join two points of a common face.
    #[test]
    fn case_triangulations_are_manifold_and_use_safe_chords() {
        for case in 0..=255u8 {
            let c = &cases()[case as usize];
            let mut directed: HashMap<(u8, u8), u32> = HashMap::new();
            for t in &c.tris {
                for k in 0..3 {
                    *directed.entry((t[k], t[(k + 1) % 3])).or_default() += 1;
                }
            }
            let sides: Vec<(u8, u8)> = face_segments(case)
                .into_iter()
                .map(|(a, b)| (a as u8, b as u8))
                .collect();
            for (&(a, b), &n) in &directed {
                assert_eq!(n, 1, "case {case}: directed edge {a}->{b} used {n} times");
                if sides.contains(&(a, b)) {
                    assert!(!directed.contains_key(&(b, a)), "case {case}");
                } else {
                    assert!(
                        directed.contains_key(&(b, a)),
                        "case {case}: interior edge {a}->{b} has no twin"
                    );
                    assert!(!share_face(a as usize, b as usize), "case {case}");
                }
            }
            for s in &sides {
                assert!(directed.contains_key(s), "case {case}: side {s:?} unused");
            }
        }
    }

    /// Every loop of every case has a safe triangulation with all triangles facing outward,
    /// and the table covers every loop (n - 2 triangles for a loop of n crossings).
    #[test]
    fn every_loop_has_a_safe_triangulation() {
        for case in 0..=255u8 {
            let loops = case_loops(case);
            for lp in &loops {
                assert!(triangulate_loop(lp).is_some(), "case {case} loop {lp:?}");
            }
            let expected: usize = loops.iter().map(|l| l.len() - 2).sum();
            assert_eq!(cases()[case as usize].tris.len(), expected, "case {case}");
        }
    }

    #[test]
    fn single_corner_case_is_one_outward_triangle() {
        let c = &cases()[1];
        assert_eq!(c.tris.len(), 1);
        let t = c.tris[0].map(|e| edge_mid(e as usize));
        let n = cross(sub(t[1], t[0]), sub(t[2], t[0]));
        // Corner 0 is inside; the outward normal points away from it, towards (1, 1, 1).
        assert!(n[0] > 0.0 && n[1] > 0.0 && n[2] > 0.0, "{n:?}");
    }
}
