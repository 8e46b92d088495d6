//! The 8-node trilinear hexahedron of a voxel, with linear isotropic elasticity.
//!
//! Standard isoparametric formulation (e.g. Zienkiewicz & Taylor, *The Finite Element Method*,
//! vol. 1, ch. 6; for voxel micro-FE van Rietbergen et al. 1995, J Biomech 28:69): shape
//! functions `N_a = Π_i (1 + s_ai ξ_i) / 2` on the reference cube `[-1, 1]³`, exact 2×2×2 Gauss
//! integration of `Bᵀ D B`. Every voxel of a grid has the same shape, so one element stiffness
//! serves all of them, scaled by the element's Young's modulus.
//!
//! Local node numbering is lexicographic: node `a = dx + 2 dy + 4 dz` sits at voxel corner
//! `(x + dx, y + dy, z + dz)`. Degrees of freedom are `3 a + c` with `c` = 0, 1, 2 for x, y, z.
//! Strains and stresses use Voigt order `[xx, yy, zz, yz, xz, xy]` with engineering shear strain.

/// Offsets of the eight local nodes, `a = dx + 2 dy + 4 dz`.
pub const NODE_OFFSETS: [[usize; 3]; 8] = [
    [0, 0, 0],
    [1, 0, 0],
    [0, 1, 0],
    [1, 1, 0],
    [0, 0, 1],
    [1, 0, 1],
    [0, 1, 1],
    [1, 1, 1],
];

/// Linear isotropic elastic material.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Material {
    /// Tissue Young's modulus (MPa).
    pub young_modulus_mpa: f64,
    /// Poisson's ratio (-).
    pub poisson_ratio: f64,
}

impl Default for Material {
    /// Typical tissue properties for voxel micro-FE of trabecular bone: E = 10 GPa, ν = 0.3
    /// (van Rietbergen et al. 1995; Bevill & Keaveny 2009 report effective tissue moduli of
    /// 10-20 GPa for such models).
    fn default() -> Self {
        Self {
            young_modulus_mpa: 10_000.0,
            poisson_ratio: 0.3,
        }
    }
}

impl Material {
    /// Lamé constants `(λ, μ)` in MPa.
    pub fn lame_mpa(&self) -> (f64, f64) {
        let e = self.young_modulus_mpa;
        let nu = self.poisson_ratio;
        let lambda = e * nu / ((1.0 + nu) * (1.0 - 2.0 * nu));
        let mu = e / (2.0 * (1.0 + nu));
        (lambda, mu)
    }

    /// The 6×6 isotropic elasticity matrix (Voigt, engineering shear), MPa.
    pub fn elasticity_matrix(&self) -> [[f64; 6]; 6] {
        let (l, m) = self.lame_mpa();
        let mut d = [[0.0; 6]; 6];
        for i in 0..3 {
            for j in 0..3 {
                d[i][j] = l;
            }
            d[i][i] = l + 2.0 * m;
            d[i + 3][i + 3] = m;
        }
        d
    }

    /// Checks that E > 0 and -1 < ν < 0.5, both finite.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.young_modulus_mpa.is_finite() && self.young_modulus_mpa > 0.0) {
            return Err(format!(
                "Young's modulus must be positive and finite, got {} MPa",
                self.young_modulus_mpa
            ));
        }
        if !(self.poisson_ratio.is_finite()
            && self.poisson_ratio > -1.0
            && self.poisson_ratio < 0.5)
        {
            return Err(format!(
                "Poisson's ratio must lie in (-1, 0.5), got {}",
                self.poisson_ratio
            ));
        }
        Ok(())
    }
}

/// Shape-function derivatives `[dN_a/dx, dN_a/dy, dN_a/dz]` at reference point `xi` for a
/// voxel of edge lengths `h` (mm).
pub fn shape_gradients(xi: [f64; 3], h: [f64; 3]) -> [[f64; 3]; 8] {
    let mut g = [[0.0; 3]; 8];
    for (a, off) in NODE_OFFSETS.iter().enumerate() {
        let s = [
            2.0 * off[0] as f64 - 1.0,
            2.0 * off[1] as f64 - 1.0,
            2.0 * off[2] as f64 - 1.0,
        ];
        let f = [
            0.5 * (1.0 + s[0] * xi[0]),
            0.5 * (1.0 + s[1] * xi[1]),
            0.5 * (1.0 + s[2] * xi[2]),
        ];
        // dN/dxi_i = s_i/2 * prod_{j != i} f_j ; dxi/dx = 2/h.
        g[a][0] = 0.5 * s[0] * f[1] * f[2] * 2.0 / h[0];
        g[a][1] = 0.5 * s[1] * f[0] * f[2] * 2.0 / h[1];
        g[a][2] = 0.5 * s[2] * f[0] * f[1] * 2.0 / h[2];
    }
    g
}

/// Strain-displacement matrix `B` (6×24) at reference point `xi`.
pub fn strain_displacement(xi: [f64; 3], h: [f64; 3]) -> [[f64; 24]; 6] {
    let g = shape_gradients(xi, h);
    let mut b = [[0.0; 24]; 6];
    for a in 0..8 {
        let [gx, gy, gz] = g[a];
        let c = 3 * a;
        b[0][c] = gx;
        b[1][c + 1] = gy;
        b[2][c + 2] = gz;
        b[3][c + 1] = gz;
        b[3][c + 2] = gy;
        b[4][c] = gz;
        b[4][c + 2] = gx;
        b[5][c] = gy;
        b[5][c + 1] = gx;
    }
    b
}

/// The element stiffness matrix (24×24, N/mm) of one voxel of edge lengths `h` (mm), by exact
/// 2×2×2 Gauss integration.
pub fn element_stiffness(material: &Material, h: [f64; 3]) -> [[f64; 24]; 24] {
    let d = material.elasticity_matrix();
    let gp = 1.0 / 3f64.sqrt();
    let det_j = h[0] * h[1] * h[2] / 8.0;
    let mut k = [[0.0; 24]; 24];
    for &gz in &[-gp, gp] {
        for &gy in &[-gp, gp] {
            for &gx in &[-gp, gp] {
                let b = strain_displacement([gx, gy, gz], h);
                // DB (6×24)
                let mut db = [[0.0; 24]; 6];
                for i in 0..6 {
                    for j in 0..24 {
                        db[i][j] = (0..6).map(|m| d[i][m] * b[m][j]).sum();
                    }
                }
                for i in 0..24 {
                    for j in 0..24 {
                        let s: f64 = (0..6).map(|m| b[m][i] * db[m][j]).sum();
                        k[i][j] += s * det_j;
                    }
                }
            }
        }
    }
    k
}

/// Element-average strain from the 24 nodal displacements. For trilinear voxels the average of
/// `B` over the element equals `B` at the centroid, so this is exact.
pub fn mean_strain(b_centroid: &[[f64; 24]; 6], ue: &[f64; 24]) -> [f64; 6] {
    let mut e = [0.0; 6];
    for i in 0..6 {
        e[i] = (0..24).map(|j| b_centroid[i][j] * ue[j]).sum();
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    fn k_matrix(material: &Material, h: [f64; 3]) -> DMatrix<f64> {
        let k = element_stiffness(material, h);
        DMatrix::from_fn(24, 24, |i, j| k[i][j])
    }

    /// Problem: the unconstrained element has exactly the six rigid-body modes as its null
    /// space. Tolerance: eigenvalues below 1e-10 × the largest count as zero; the smallest
    /// deformation mode of a voxel is many orders larger.
    #[test]
    fn element_stiffness_has_exactly_six_zero_eigenvalues() {
        for (mat, h) in [
            (Material::default(), [1.0, 1.0, 1.0]),
            (
                Material {
                    young_modulus_mpa: 17_000.0,
                    poisson_ratio: 0.45,
                },
                [0.02, 0.03, 0.05],
            ),
        ] {
            let k = k_matrix(&mat, h);
            assert!((&k - k.transpose()).abs().max() < 1e-9 * k.abs().max());
            let eig = k.symmetric_eigen();
            let max = eig.eigenvalues.iter().cloned().fold(0.0, f64::max);
            let zeros = eig
                .eigenvalues
                .iter()
                .filter(|&&l| l.abs() < 1e-10 * max)
                .count();
            assert_eq!(zeros, 6, "eigenvalues: {:?}", eig.eigenvalues);
            assert!(eig.eigenvalues.iter().all(|&l| l > -1e-10 * max));
        }
    }

    /// Problem: a homogeneous strain field is represented exactly; the element strain energy
    /// then equals ½ εᵀDε V. Tolerance 1e-12 relative (round-off only).
    #[test]
    fn homogeneous_strain_energy_matches_continuum() {
        let mat = Material::default();
        let h = [0.5, 0.7, 0.9];
        let k = element_stiffness(&mat, h);
        // u = G x with a general (non-symmetric) displacement gradient.
        let g = [
            [0.01, 0.002, -0.003],
            [0.004, -0.02, 0.001],
            [0.0, 0.005, 0.015],
        ];
        let mut u = [0.0; 24];
        for (a, off) in NODE_OFFSETS.iter().enumerate() {
            let x = [
                off[0] as f64 * h[0],
                off[1] as f64 * h[1],
                off[2] as f64 * h[2],
            ];
            for i in 0..3 {
                u[3 * a + i] = (0..3).map(|j| g[i][j] * x[j]).sum();
            }
        }
        let eps = [
            g[0][0],
            g[1][1],
            g[2][2],
            g[1][2] + g[2][1],
            g[0][2] + g[2][0],
            g[0][1] + g[1][0],
        ];
        let d = mat.elasticity_matrix();
        let w_cont: f64 = 0.5
            * (0..6)
                .map(|i| (0..6).map(|j| eps[i] * d[i][j] * eps[j]).sum::<f64>())
                .sum::<f64>()
            * h[0]
            * h[1]
            * h[2];
        let w_fe: f64 = 0.5
            * (0..24)
                .map(|i| (0..24).map(|j| u[i] * k[i][j] * u[j]).sum::<f64>())
                .sum::<f64>();
        assert!((w_fe - w_cont).abs() < 1e-12 * w_cont, "{w_fe} vs {w_cont}");
        let b = strain_displacement([0.0; 3], h);
        let e = mean_strain(&b, &u);
        for i in 0..6 {
            assert!((e[i] - eps[i]).abs() < 1e-14);
        }
    }
}
