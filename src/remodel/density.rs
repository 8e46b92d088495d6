//! How bone volume fraction, apparent density, BMD and Young's modulus are linked.
//!
//! The chain, each link a stated relation:
//!
//! - apparent (wet) density ρ_app = ρ_tissue · v_b, with wet tissue density
//!   ρ_tissue = 2.0 g/cm³. This is the value Carter & Hayes (1977, J Bone Joint Surg Am 59:954)
//!   and Gibson (1985, J Biomech 18:317) use for fully mineralised wet bone tissue.
//! - ash density ρ_ash = 0.6 · ρ_app. The ash fraction 0.6 is the mean of Keyak et al. (1994,
//!   J Biomed Mater Res 28:1329) and Schileo et al. (2008, J Biomech 41:2483).
//! - QCT BMD in mg HA/cm³ equals the ash density in mg/cm³. We assume an HA-equivalent
//!   phantom reads ash density one to one; that assumption is ours.
//!
//! Together: BMD [mg/cm³] = 1200 · v_b. BMD and v_b are proportional, so a % change in BMD
//! is the same % change in BV/TV at constant tissue mineral density. That is the default
//! scale bridge of design §1.2.
//!
//! Modulus: E = 4730 · ρ_app^1.56 MPa, the vertebral trabecular power law of Morgan, Bayraktar
//! & Keaveny (2003, J Biomech 36:897), with ρ_app in g/cm³ (on-axis, superior–inferior).

use serde::{Deserialize, Serialize};

/// Parameters of the density relations (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DensityRelations {
    /// Wet tissue density ρ_tissue (g/cm³).
    pub tissue_density_g_cm3: f64,
    /// ρ_ash / ρ_app.
    pub ash_fraction: f64,
    /// Power-law coefficient of E(ρ_app) (MPa).
    pub modulus_coefficient_mpa: f64,
    /// Power-law exponent of E(ρ_app).
    pub modulus_exponent: f64,
}

impl Default for DensityRelations {
    fn default() -> Self {
        Self {
            tissue_density_g_cm3: 2.0,
            ash_fraction: 0.6,
            modulus_coefficient_mpa: 4730.0,
            modulus_exponent: 1.56,
        }
    }
}

impl DensityRelations {
    /// Checks that every parameter is finite and positive (and the ash fraction ≤ 1).
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            ("tissue density", self.tissue_density_g_cm3, 10.0),
            ("ash fraction", self.ash_fraction, 1.0),
            ("modulus coefficient", self.modulus_coefficient_mpa, 1e6),
            ("modulus exponent", self.modulus_exponent, 5.0),
        ];
        for (name, v, max) in checks {
            if !(v.is_finite() && v > 0.0 && v <= max) {
                return Err(format!("{name} must lie in (0, {max}], got {v}"));
            }
        }
        Ok(())
    }

    /// Apparent wet density (g/cm³) of bone volume fraction `v_b`.
    pub fn apparent_density_g_cm3(&self, v_b: f64) -> f64 {
        self.tissue_density_g_cm3 * v_b
    }

    /// QCT BMD (mg HA/cm³) of bone volume fraction `v_b`.
    pub fn bmd_mg_cm3(&self, v_b: f64) -> f64 {
        1000.0 * self.ash_fraction * self.tissue_density_g_cm3 * v_b
    }

    /// Bone volume fraction of a QCT BMD (mg HA/cm³).
    pub fn volume_fraction(&self, bmd_mg_cm3: f64) -> f64 {
        bmd_mg_cm3 / (1000.0 * self.ash_fraction * self.tissue_density_g_cm3)
    }

    /// Young's modulus (MPa) of bone volume fraction `v_b` (Morgan et al. 2003).
    pub fn modulus_mpa(&self, v_b: f64) -> f64 {
        self.modulus_coefficient_mpa
            * self
                .apparent_density_g_cm3(v_b.max(0.0))
                .powf(self.modulus_exponent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmd_and_volume_fraction_are_proportional_so_percent_changes_agree() {
        let d = DensityRelations::default();
        assert!((d.bmd_mg_cm3(0.125) - 150.0).abs() < 1e-9);
        assert!((d.volume_fraction(d.bmd_mg_cm3(0.2)) - 0.2).abs() < 1e-12);
        let pct_bmd = d.bmd_mg_cm3(0.9 * 0.14) / d.bmd_mg_cm3(0.14) - 1.0;
        assert!((pct_bmd + 0.1).abs() < 1e-12);
    }

    /// Morgan et al. (2003), vertebra: ρ_app = 0.2 g/cm³ gives 4730 · 0.2^1.56 ≈ 384 MPa.
    #[test]
    fn morgan_2003_vertebral_modulus_at_apparent_density_0_2() {
        let d = DensityRelations::default();
        let e = d.modulus_mpa(0.1);
        assert!((e - 4730.0 * 0.2f64.powf(1.56)).abs() < 1e-9);
        assert!((e - 384.1).abs() < 0.1, "{e}");
    }
}
