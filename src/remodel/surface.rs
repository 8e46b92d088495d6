//! Specific surface of bone as a function of porosity.
//!
//! Martin RB (1984), *Porosity and specific surface of bone*, Crit Rev Biomed Eng
//! 10(3):179–222, fitted a fifth-order polynomial to measurements over the whole range from
//! dense cortical to sparse trabecular bone:
//!
//! ```text
//! S_v(p) = 32.3 p − 93.9 p² + 134 p³ − 101 p⁴ + 28.8 p⁵      [mm²/mm³]
//! ```
//!
//! Here p is the porosity, 1 − v_b. Martin defines the curve this way, as do Beaupré et al.
//! (1990, J Orthop Res 8:651) and Hernandez et al. (2000, Bone 26:627), who use it to scale
//! remodeling rates. Some implementations evaluate it at v_b instead (for example the Python
//! package cmodiz/Bone-Models, in its Lerebours 2016 model); [`SurfaceArgument`] switches
//! between the two.
//!
//! The polynomial does not vanish at p = 1 (S_v(1) = 0.2 mm⁻¹). It is clamped to 0 outside
//! (0, 1), and the remodeling law also switches resorption off smoothly as v_b → 0 (see
//! `law.rs`).
//!
//! Consequence: specific surface per bone volume, S_v / v_b, is about 13.7 mm⁻¹ for
//! trabecular bone at v_b = 0.125. For the compact shell tissue of the built-in vertebra
//! (1000 mg/cm³, v_b = 0.833) it is about 4.0 mm⁻¹. Per unit of bone, trabecular bone
//! therefore turns over about 3.4 times faster, in the direction of the classical turnover
//! figures of about 25 %/year trabecular against 3–10 %/year cortical (Parfitt 1983).

use serde::{Deserialize, Serialize};

/// Which argument the S_v polynomial takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SurfaceArgument {
    /// p = 1 − v_b (Martin 1984, Beaupré 1990).
    #[default]
    Porosity,
    /// p = v_b (cmodiz/Bone-Models `lerebours_model.py`).
    VolumeFraction,
}

/// Martin's polynomial S_v(p) in mm⁻¹, clamped to 0 outside (0, 1).
pub fn martin_specific_surface_per_mm(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return 0.0;
    }
    let s = p * (32.3 + p * (-93.9 + p * (134.0 + p * (-101.0 + p * 28.8))));
    s.max(0.0)
}

/// d S_v / d p (mm⁻¹), 0 outside (0, 1).
pub fn martin_specific_surface_slope_per_mm(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return 0.0;
    }
    32.3 + p * (-2.0 * 93.9 + p * (3.0 * 134.0 + p * (-4.0 * 101.0 + p * 5.0 * 28.8)))
}

impl SurfaceArgument {
    /// Specific surface (mm⁻¹) of bone with volume fraction `v_b`.
    pub fn specific_surface_per_mm(self, v_b: f64) -> f64 {
        match self {
            SurfaceArgument::Porosity => martin_specific_surface_per_mm(1.0 - v_b),
            SurfaceArgument::VolumeFraction => martin_specific_surface_per_mm(v_b),
        }
    }

    /// d S_v / d v_b (mm⁻¹).
    pub fn slope_per_mm(self, v_b: f64) -> f64 {
        match self {
            SurfaceArgument::Porosity => -martin_specific_surface_slope_per_mm(1.0 - v_b),
            SurfaceArgument::VolumeFraction => martin_specific_surface_slope_per_mm(v_b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of Martin's polynomial at a few porosities, and its maximum of about
    /// 4.19 mm⁻¹ near p = 0.37.
    #[test]
    fn martin_1984_specific_surface_values_and_peak() {
        let cases = [(0.05, 1.40), (0.3, 4.11), (0.5, 4.01), (0.9, 1.44)];
        for (p, sv) in cases {
            assert!((martin_specific_surface_per_mm(p) - sv).abs() < 0.01, "{p}");
        }
        let (p_max, s_max) = (1..1000)
            .map(|i| i as f64 / 1000.0)
            .map(|p| (p, martin_specific_surface_per_mm(p)))
            .fold((0.0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
        assert!((p_max - 0.373).abs() < 0.01 && (s_max - 4.19).abs() < 0.01);
        assert_eq!(martin_specific_surface_per_mm(0.0), 0.0);
        assert_eq!(martin_specific_surface_per_mm(1.0), 0.0);
    }

    #[test]
    fn specific_surface_slope_matches_finite_differences() {
        for arg in [SurfaceArgument::Porosity, SurfaceArgument::VolumeFraction] {
            for v in [0.1, 0.3, 0.6, 0.9] {
                let h = 1e-6;
                let fd = (arg.specific_surface_per_mm(v + h) - arg.specific_surface_per_mm(v - h))
                    / (2.0 * h);
                assert!((arg.slope_per_mm(v) - fd).abs() < 1e-6, "{arg:?} {v}");
            }
        }
    }
}
