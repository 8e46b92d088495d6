//! Verification of the morphometry on shapes with known answers, and on the real micro-CT
//! sample when it is present.

use super::*;
use crate::volume::{Dims, Grid};

const S: f64 = 0.02; // voxel size (mm) of the synthetic shapes

fn grid(n: [usize; 3]) -> Grid {
    Grid::isotropic(Dims::from(n), S)
}

/// Plates normal to z, `w` voxels thick, `gap` voxels apart, the first and last touching the
/// image border: plate, gap, plate, gap, plate.
fn plates(w: usize, gap: usize) -> BoneMask {
    let nz = 3 * w + 2 * gap;
    BoneMask::from_fn(grid([40, 36, nz]), |_, _, z| z % (w + gap) < w)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn plates_have_exact_thickness_separation_and_surface() {
    for w in [4usize, 8] {
        let gap = 12;
        let mask = plates(w, gap);
        // Even widths are exact for the BoneJ local thickness (diameter = 2 x distance to the
        // nearest background centre = w) on every voxel at least w/2 from the lateral image
        // border; only f32 storage rounding remains (1e-6). Nearer the lateral border the
        // outside counts as background (BoneJ), so the square plate edges are thinner there
        // (a corner voxel is in no ball of radius w/2): that rim of w/2 voxels on 4 sides
        // bounds the bias of the mean to w/2 * 4 / 36 of the voxels, each at most w/2 low.
        let map = local_thickness_map(&mask, Phase::Bone, Border::Site).unwrap();
        let d = mask.dims();
        for i in 0..d.len() {
            let [x, y, _] = d.coords(i);
            let interior = x >= w / 2 && y >= w / 2 && x + w / 2 < d.nx && y + w / 2 < d.ny;
            if mask.voxels[i] && interior {
                assert!(
                    rel(map.thickness_mm[i] as f64, w as f64 * S) < 1e-6,
                    "w={w} voxel {i}"
                );
            }
        }
        let th = trabecular_thickness(&mask).unwrap();
        assert!(rel(th.max_mm, w as f64 * S) < 1e-6, "w={w} {th:?}");
        assert!(th.mean_mm <= w as f64 * S * (1.0 + 1e-6), "w={w} {th:?}");
        assert!(
            rel(th.mean_mm, w as f64 * S) < (w as f64 / 2.0) * 4.0 / 36.0 * 0.5,
            "w={w} {th:?}"
        );
        let sp = trabecular_separation(&mask).unwrap();
        assert!(rel(sp.mean_mm, gap as f64 * S) < 1e-6, "w={w} {sp:?}");
        assert!(sp.sd_mm < 1e-6, "w={w} {sp:?}");
        // Tb.N is the plate frequency 1 / ((w + gap) s).
        // (the Tb.Th rim bias above, diluted by Tb.Sp: same bound).
        let tb_n = trabecular_number(th.mean_mm, sp.mean_mm);
        assert!(rel(tb_n, 1.0 / ((w + gap) as f64 * S)) < (w as f64 / 2.0) * 4.0 / 36.0 * 0.5);
        // Four plate faces lie inside the image (the two outer plates each lose their cut
        // face): BS/BV = 4 / (3 w s), exact for flat marching-cubes faces (1e-6).
        let surf = bone_surface(&mask).unwrap();
        let expect = 4.0 / (3.0 * w as f64 * S);
        assert!(rel(surf.bs_bv_per_mm(), expect) < 1e-6, "w={w} {surf:?}");
        // A flat plate does not change area when displaced along its normal: SMI = 0 up to
        // rounding (|SMI| < 1e-3).
        assert!(surf.smi().abs() < 1e-3, "w={w} smi {}", surf.smi());
        // Parallel plates: no intercept along the plates, DA -> 1 (> 0.97 for the finite
        // direction set and line ends).
        let f = degree_of_anisotropy(&mask, &MilParams::default()).unwrap();
        assert!(f.da > 0.97, "w={w} {f:?}");
    }
}

#[test]
fn rod_has_thickness_of_its_diameter_and_smi_of_three() {
    // A cylinder of radius r = 6 voxels along z across the whole image, axis on a voxel
    // centre.
    let r = 6.0;
    let n = [33, 33, 96];
    let mask = BoneMask::from_fn(grid(n), |x, y, _| {
        (x as f64 - 16.0).powi(2) + (y as f64 - 16.0).powi(2) <= r * r
    });
    let th = trabecular_thickness(&mask).unwrap();
    // Tb.Th = 2r within one voxel: the digital disc's inscribed ball differs from r by less
    // than a voxel, and the ends (outside = background, BoneJ) thin the last ~r layers.
    println!("rod Tb.Th {:?} (2r = {})", th, 2.0 * r * S);
    assert!((th.mean_mm - 2.0 * r * S).abs() <= S, "{th:?}");
    let surf = bone_surface(&mask).unwrap();
    println!("rod surface {surf:?} smi {}", surf.smi());
    // SMI = 3 for a cylinder. The smoothed (sigma = 1 voxel) marching-cubes surface of the
    // digital disc is within 2 % of the true area, and SMI within 0.15 (measured 3.07).
    assert!(
        rel(surf.bs_mm2, 2.0 * std::f64::consts::PI * r * 96.0 * S * S) < 0.02,
        "{surf:?}"
    );
    assert!((surf.smi() - 3.0).abs() < 0.15, "smi {}", surf.smi());
}

#[test]
fn sphere_has_exact_volume_fraction_and_smi_near_four() {
    let rad = 12.0;
    let n = [32, 32, 32];
    let c = 15.5;
    let mask = BoneMask::from_fn(grid(n), |x, y, z| {
        (x as f64 - c).powi(2) + (y as f64 - c).powi(2) + (z as f64 - c).powi(2) <= rad * rad
    });
    // Independent count of the lattice points of the ball: row lengths per (y, z).
    let mut count = 0usize;
    for z in 0..32 {
        for y in 0..32 {
            let rem = rad * rad - (z as f64 - c).powi(2) - (y as f64 - c).powi(2);
            if rem >= 0.0 {
                let h = rem.sqrt();
                // x - c in [-h, h] with x integer and c = 15.5.
                let lo = ((c - h).ceil() as i64).max(0);
                let hi = ((c + h).floor() as i64).min(31);
                count += (hi - lo + 1).max(0) as usize;
            }
        }
    }
    let bv_tv = bone_volume_fraction(&mask).unwrap();
    assert_eq!(bv_tv, count as f64 / (32.0 * 32.0 * 32.0));
    // ... and within 2 % of the continuous ball (lattice-point error of a radius-12 ball).
    assert!(
        rel(
            bv_tv,
            4.0 / 3.0 * std::f64::consts::PI * rad.powi(3) / 32768.0
        ) < 0.02
    );
    let surf = bone_surface(&mask).unwrap();
    println!("sphere surface {surf:?} smi {}", surf.smi());
    // SMI = 4 for a sphere. BoneJ reports 3.5-4 on voxelised spheres from the raw binary
    // mesh; with the sigma = 1 voxel smoothing the radius-12 ball gives 4.07 and an area
    // within 2 % of 4 pi R²: tolerance 0.15.
    assert!(
        rel(surf.bs_mm2, 4.0 * std::f64::consts::PI * (rad * S).powi(2)) < 0.02,
        "{surf:?}"
    );
    assert!((surf.smi() - 4.0).abs() < 0.15, "smi {}", surf.smi());
}

#[test]
fn cubic_rod_lattice_has_exact_volume_fraction_and_connectivity() {
    // Rods of a x a voxels along x, y and z on a period-p grid, centred in each period,
    // k periods per side. A voxel is bone when at least two of its coordinates fall in the
    // rod band, so per cell BV = 3 a² (p − a) + a³.
    let (p, a, k) = (10usize, 4usize, 4usize);
    let o = (p - a) / 2;
    let band = |t: usize| (o..o + a).contains(&(t % p));
    let n = k * p;
    let mask = BoneMask::from_fn(grid([n, n, n]), |x, y, z| {
        (band(x) as u8 + band(y) as u8 + band(z) as u8) >= 2
    });
    let expect = (3 * a * a * (p - a) + a * a * a) as f64 / (p * p * p) as f64;
    assert_eq!(bone_volume_fraction(&mask).unwrap(), expect);
    // Infinite cubic lattice: per cell one node and three rods, χ = 1 − 3 = −2. The image
    // border cuts the lattice where its boundary layers repeat periodically, so the
    // Odgaard-Gundersen estimate is exact: Δχ = −2 k³ (to floating point, 1e-9).
    let conn = connectivity_density(&mask).unwrap();
    assert!(
        (conn.delta_chi + 2.0 * (k * k * k) as f64).abs() < 1e-9,
        "{conn:?}"
    );
    // Conn.D = (1 + 2 k³) / V → 2 / p³: within 1 / (2 k³) (the "+1" of β1 = 1 − Δχ).
    let cd_expect = 2.0 / (p as f64 * S).powi(3);
    assert!(
        rel(conn.conn_d_per_mm3, cd_expect) <= 1.0 / (2.0 * (k * k * k) as f64) + 1e-12,
        "{conn:?}"
    );
    // Without the border correction the raw χ is far off (the cut rods are free ends).
    assert!(conn.euler_characteristic as f64 != conn.delta_chi);
}

/// Random overlapping balls (fixed seed): statistically isotropic.
fn random_balls(n: usize, count: usize, seed: u64) -> BoneMask {
    let mut rng = SplitMix64::new(seed);
    let balls: Vec<[f64; 4]> = (0..count)
        .map(|_| {
            [
                rng.next_f64() * n as f64,
                rng.next_f64() * n as f64,
                rng.next_f64() * n as f64,
                2.5 + 3.0 * rng.next_f64(),
            ]
        })
        .collect();
    let mut voxels = vec![false; n * n * n];
    for b in &balls {
        let r = b[3];
        let lo = |c: f64| ((c - r).floor().max(0.0)) as usize;
        let hi = |c: f64| ((c + r).ceil() as usize).min(n - 1);
        for z in lo(b[2])..=hi(b[2]) {
            for y in lo(b[1])..=hi(b[1]) {
                for x in lo(b[0])..=hi(b[0]) {
                    let d = (x as f64 - b[0]).powi(2)
                        + (y as f64 - b[1]).powi(2)
                        + (z as f64 - b[2]).powi(2);
                    if d <= r * r {
                        voxels[x + n * (y + n * z)] = true;
                    }
                }
            }
        }
    }
    BoneMask::new(grid([n, n, n]), voxels).unwrap()
}

#[test]
fn random_balls_are_isotropic() {
    let mask = random_balls(96, 700, 42);
    let bv_tv = mask.bv_tv();
    let f = degree_of_anisotropy(&mask, &MilParams::default()).unwrap();
    println!("balls bv/tv {bv_tv} fabric {f:?}");
    // DA of a statistically isotropic structure: sampling noise and the voxel lattice only,
    // < 0.1.
    assert!(f.da < 0.1, "{f:?}");
}

#[test]
fn invalid_masks_are_rejected() {
    let g = grid([4, 4, 4]);
    let none = BoneMask::from_fn(g, |_, _, _| false);
    assert_eq!(
        morphometry(&none, &MorphParams::default()),
        Err(MorphError::NoBone)
    );
    let all = BoneMask::from_fn(g, |_, _, _| true);
    assert_eq!(
        morphometry(&all, &MorphParams::default()),
        Err(MorphError::NoMarrow)
    );
    let empty = BoneMask {
        grid: grid([0, 4, 4]),
        voxels: vec![],
    };
    assert!(matches!(
        validate(&empty),
        Err(MorphError::EmptyMask { .. })
    ));
    let short = BoneMask {
        grid: g,
        voxels: vec![true; 5],
    };
    assert!(matches!(
        validate(&short),
        Err(MorphError::SizeMismatch { .. })
    ));
    let mut bad = BoneMask::from_fn(g, |x, _, _| x < 2);
    bad.grid.voxel_size_mm[1] = f64::NAN;
    assert!(matches!(
        validate(&bad),
        Err(MorphError::BadVoxelSize { .. })
    ));
    let ok = BoneMask::from_fn(g, |x, _, _| x < 2);
    let params = MilParams {
        directions: 3,
        ..MilParams::default()
    };
    assert!(matches!(
        degree_of_anisotropy(&ok, &params),
        Err(MorphError::InvalidParams(_))
    ));
}

#[test]
fn morphometry_json_has_the_cli_keys() {
    let mask = random_balls(32, 40, 3);
    let m = morphometry(&mask, &MorphParams::default()).unwrap();
    let v = serde_json::to_value(m).unwrap();
    let keys = [
        "bv_tv",
        "bs_bv_per_mm",
        "tb_th_mm",
        "tb_th_sd_mm",
        "tb_sp_mm",
        "tb_sp_sd_mm",
        "tb_n_per_mm",
        "conn_d_per_mm3",
        "da",
        "smi",
    ];
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), keys.len());
    for k in keys {
        assert!(obj[k].as_f64().unwrap().is_finite(), "{k}");
    }
}

#[test]
fn real_microct_sample_is_in_the_physiological_range() {
    let Some(path) = crate::sample_data::microct_sample() else {
        return;
    };
    // Global threshold 70 without smoothing (sidecar: 200³ uint8, 19.5 µm, bone bright).
    let vol = crate::volume::load_volume(&path).unwrap();
    assert_eq!(vol.dims(), Dims::new(200, 200, 200));
    let mask = crate::volume::segment::threshold(&vol, 70.0);
    let t = std::time::Instant::now();
    let m = morphometry(&mask, &MorphParams::default()).unwrap();
    println!(
        "micro-CT morphometry ({:.2} s): {m:?}",
        t.elapsed().as_secs_f64()
    );
    assert!((0.15..=0.35).contains(&m.bv_tv), "{m:?}");
    assert!((0.1..=0.3).contains(&m.tb_th_mm), "{m:?}");
    assert!((0.4..=1.2).contains(&m.tb_sp_mm), "{m:?}");
    assert!((-1.0..=3.0).contains(&m.smi), "{m:?}");
    assert!((0.0..=1.0).contains(&m.da), "{m:?}");
    assert!(m.conn_d_per_mm3 > 0.0 && m.bs_bv_per_mm > 0.0, "{m:?}");
}
