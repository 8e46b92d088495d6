//! The isotropic, strain-based continuum damage law of one bone compartment, with exponential
//! softening regularised by the element size (crack band).
//!
//! - **Stress.** σ = (1 − d) C ε (Kachanov 1958; Lemaitre 1985): one scalar damage variable
//!   d ∈ [0, d_max] scales the whole elasticity tensor.
//! - **Equivalent strain.** Bone fails in compression and in tension at different strains, and
//!   its yield *strains* (not stresses) are nearly independent of density within a site
//!   (Kopperdahl & Keaveny 1998, J Biomech 31:601; Morgan & Keaveny 2001, J Biomech 34:569).
//!   So the damage criterion is the principal-strain criterion normalised by the two yield
//!   strains: η = max(⟨−ε_III⟩ / ε_y,c, ⟨ε_I⟩ / ε_y,t), with ε_I ≥ ε_II ≥ ε_III the principal
//!   strains and ⟨x⟩ = max(x, 0). η = 1 is the onset of damage in either mode.
//! - **History.** κ = max over the loading history of η (κ ≥ 1 once damage has started), so d
//!   never decreases.
//! - **Softening.** The exponential law of Peerlings et al. (1998, Eur J Mech A 17:523) in
//!   normalised form: d(κ) = 1 − exp(−(κ − 1)/(κ_f − 1)) / κ for κ > 1, capped at d_max (a
//!   residual stiffness that keeps the secant operator positive definite).
//! - **Crack band.** Bažant & Oh (1983, Mater Struct 16:155): the energy dissipated per unit
//!   volume of a softening element is the fracture energy G_f divided by the element size h,
//!   so the energy dissipated by a localised band does not depend on the mesh. For the law
//!   above in uniaxial compression the energy per unit volume to complete failure is
//!   E ε_y,c² (κ_f − ½); setting it to G_f/h gives κ_f = ½ + G_f / (h E ε_y,c²). κ_f must
//!   exceed 1 (else the element would snap back): G_f/h > ½ E ε_y,c², the elastic energy at
//!   the onset.

use serde::{Deserialize, Serialize};

use super::FractureError;

/// Material parameters of the damage law of one compartment (bone type).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DamageParams {
    /// Compressive yield strain ε_y,c (> 0; a magnitude).
    pub yield_strain_compression: f64,
    /// Tensile yield strain ε_y,t (> 0).
    pub yield_strain_tension: f64,
    /// Fracture energy G_f (N/mm = mJ/mm² = kJ/m²) at the compartment's reference modulus;
    /// see [`DamageParams::reference_modulus_mpa`].
    pub fracture_energy_n_per_mm: f64,
    /// G_f scales with the element's modulus: G_f(E) = G_f · E / E_ref. With yield strains
    /// independent of density this keeps the softening ductility κ_f independent of density
    /// too (our choice; no measurement of the density dependence of G_f in vertebral bone
    /// exists that we know of). `E_ref` in MPa.
    pub reference_modulus_mpa: f64,
    /// Largest damage d_max < 1 (residual stiffness 1 − d_max).
    pub max_damage: f64,
}

impl DamageParams {
    /// The law with both yield strains times `f` and the fracture energy times f², which
    /// keeps the softening ductility κ_f of every element (κ_f − ½ ∝ G_f / ε_y,c²).
    pub fn with_yield_strains_scaled(&self, f: f64) -> Self {
        Self {
            yield_strain_compression: self.yield_strain_compression * f,
            yield_strain_tension: self.yield_strain_tension * f,
            fracture_energy_n_per_mm: self.fracture_energy_n_per_mm * f * f,
            ..*self
        }
    }

    /// Checks every parameter; names the first bad one.
    pub fn validate(&self) -> Result<(), FractureError> {
        let bad = |name: &str, value: f64, rule: &str| {
            Err(FractureError::InvalidParameter(format!(
                "{name} must be {rule}, got {value}"
            )))
        };
        for (name, v) in [
            ("compressive yield strain", self.yield_strain_compression),
            ("tensile yield strain", self.yield_strain_tension),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 0.5) {
                return bad(name, v, "in (0, 0.5)");
            }
        }
        if !(self.fracture_energy_n_per_mm.is_finite() && self.fracture_energy_n_per_mm > 0.0) {
            return bad(
                "fracture energy (N/mm)",
                self.fracture_energy_n_per_mm,
                "positive and finite",
            );
        }
        if !(self.reference_modulus_mpa.is_finite() && self.reference_modulus_mpa > 0.0) {
            return bad(
                "reference modulus (MPa)",
                self.reference_modulus_mpa,
                "positive and finite",
            );
        }
        if !(self.max_damage.is_finite() && self.max_damage > 0.0 && self.max_damage < 1.0) {
            return bad("maximum damage", self.max_damage, "in (0, 1)");
        }
        Ok(())
    }

    /// The law of one element compartment of modulus `young_modulus_mpa` and size `h_mm`.
    /// Fails when the element would snap back (G_f/h ≤ ½ E ε_y,c²).
    pub fn element_law(
        &self,
        young_modulus_mpa: f64,
        h_mm: f64,
    ) -> Result<ElementLaw, FractureError> {
        self.validate()?;
        if !(young_modulus_mpa.is_finite() && young_modulus_mpa > 0.0) {
            return Err(FractureError::InvalidParameter(format!(
                "element modulus must be positive and finite, got {young_modulus_mpa} MPa"
            )));
        }
        if !(h_mm.is_finite() && h_mm > 0.0) {
            return Err(FractureError::InvalidParameter(format!(
                "element size must be positive and finite, got {h_mm} mm"
            )));
        }
        let g_f = self.fracture_energy_n_per_mm * young_modulus_mpa / self.reference_modulus_mpa;
        let onset_energy = young_modulus_mpa * self.yield_strain_compression.powi(2);
        let kappa_f = 0.5 + g_f / (h_mm * onset_energy);
        if kappa_f <= 1.0 + 1e-9 {
            return Err(FractureError::InvalidParameter(format!(
                "fracture energy {g_f:.4} N/mm is too small for {h_mm} mm elements: G_f/h must \
                 exceed the elastic energy density at the onset, {:.4} MPa (the element would \
                 snap back)",
                0.5 * onset_energy
            )));
        }
        Ok(ElementLaw {
            young_modulus_mpa,
            yield_strain_compression: self.yield_strain_compression,
            yield_strain_tension: self.yield_strain_tension,
            kappa_f,
            max_damage: self.max_damage,
        })
    }
}

/// The damage law of one element compartment, ready to evaluate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ElementLaw {
    pub young_modulus_mpa: f64,
    pub yield_strain_compression: f64,
    pub yield_strain_tension: f64,
    /// Normalised softening parameter κ_f (> 1).
    pub kappa_f: f64,
    pub max_damage: f64,
}

impl ElementLaw {
    /// Normalised equivalent strain η of a strain (Voigt `[xx, yy, zz, yz, xz, xy]`,
    /// engineering shear).
    pub fn equivalent_strain(&self, strain: &[f64; 6]) -> f64 {
        let (max, min) = principal_extremes(strain);
        (max.max(0.0) / self.yield_strain_tension)
            .max((-min).max(0.0) / self.yield_strain_compression)
    }

    /// Damage at history variable κ.
    pub fn damage(&self, kappa: f64) -> f64 {
        if kappa <= 1.0 {
            return 0.0;
        }
        let d = 1.0 - (-(kappa - 1.0) / (self.kappa_f - 1.0)).exp() / kappa;
        d.min(self.max_damage)
    }

    /// Uniaxial-stress compressive stress magnitude (MPa) at strain magnitude `strain` on a
    /// monotonic path (the analytic softening curve).
    pub fn uniaxial_compression_stress_mpa(&self, strain: f64) -> f64 {
        let kappa = strain / self.yield_strain_compression;
        (1.0 - self.damage(kappa)) * self.young_modulus_mpa * strain
    }

    /// Energy per unit volume (MPa = mJ/mm³) dissipated on a monotonic uniaxial compression
    /// path up to history κ (below the damage cap): the work ∫σ dε minus the elastic energy
    /// ½ (1 − d) E ε² still stored.
    pub fn uniaxial_dissipation_mpa(&self, kappa: f64) -> f64 {
        if kappa <= 1.0 {
            return 0.0;
        }
        let ey = self.yield_strain_compression;
        let e = self.young_modulus_mpa;
        let decay = (-(kappa - 1.0) / (self.kappa_f - 1.0)).exp();
        let work = 0.5 * e * ey * ey + e * ey * ey * (self.kappa_f - 1.0) * (1.0 - decay);
        let stored = 0.5 * e * ey * ey * kappa * decay;
        work - stored
    }
}

/// Largest and smallest principal value of a strain in Voigt form (engineering shear).
///
/// Closed form of the eigenvalues of a symmetric 3×3 matrix by the trigonometric solution of
/// its characteristic cubic (Smith 1961, Commun ACM 4:168): with q = tr/3, p² = ‖A − qI‖²/6
/// and B = (A − qI)/p, the eigenvalues are q + 2p cos(φ + 2πk/3), φ = acos(det(B)/2)/3. It
/// replaced an iterative eigen-solver that took a seventh of a vertebra run.
pub fn principal_extremes(strain: &[f64; 6]) -> (f64, f64) {
    let [xx, yy, zz, yz, xz, xy] = *strain;
    let (a12, a13, a23) = (0.5 * xy, 0.5 * xz, 0.5 * yz);
    let q = (xx + yy + zz) / 3.0;
    let (b11, b22, b33) = (xx - q, yy - q, zz - q);
    let off = a12 * a12 + a13 * a13 + a23 * a23;
    let p2 = (b11 * b11 + b22 * b22 + b33 * b33 + 2.0 * off) / 6.0;
    if p2 <= 0.0 {
        return (q, q);
    }
    let p = p2.sqrt();
    let det = b11 * (b22 * b33 - a23 * a23) - a12 * (a12 * b33 - a23 * a13)
        + a13 * (a12 * a23 - b22 * a13);
    let r = (0.5 * det / (p2 * p)).clamp(-1.0, 1.0);
    let phi = r.acos() / 3.0;
    let max = q + 2.0 * p * phi.cos();
    let min = q + 2.0 * p * (phi + 2.0 * std::f64::consts::FRAC_PI_3).cos();
    (max, min)
}
