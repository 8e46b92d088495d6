//! From the macroscale % change of trabecular BMD to a % change of the microstructure's BV/TV
//! (design §1.2–1.3). The mapping is a trait so that other relations can be plugged in.

/// Turns a % change of the trabecular apparent BMD into a % change of BV/TV.
pub trait BvTvMapping: Send + Sync {
    /// The mapping as [`parse_mapping`] reads it back (`equal`, `proportional:0.8`).
    fn spec(&self) -> String;
    /// % change of BV/TV for a % change `bmd_change_pct` of trabecular BMD.
    fn bv_tv_change_pct(&self, bmd_change_pct: f64) -> f64;
}

/// Equal percentages: apparent BMD = tissue mineral density × BV/TV with the tissue mineral
/// density held constant, so BV/TV changes by the same percentage as BMD. This is the
/// framework's default (Vemparala et al. 2025); it neglects the change of tissue
/// mineralisation with turnover, which QCT cannot separate from BV/TV either.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EqualPercentage;

impl BvTvMapping for EqualPercentage {
    fn spec(&self) -> String {
        "equal".into()
    }

    fn bv_tv_change_pct(&self, bmd_change_pct: f64) -> f64 {
        bmd_change_pct
    }
}

/// BV/TV changes by `ratio` times the BMD percentage: `ratio` < 1 attributes part of the BMD
/// change to the tissue mineral density (e.g. the secondary mineralisation lag of new bone).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proportional {
    pub ratio: f64,
}

impl BvTvMapping for Proportional {
    fn spec(&self) -> String {
        format!("proportional:{}", self.ratio)
    }

    fn bv_tv_change_pct(&self, bmd_change_pct: f64) -> f64 {
        self.ratio * bmd_change_pct
    }
}

/// Parses `equal` / `equal-percentage` or `proportional:R` (R finite and positive).
pub fn parse_mapping(s: &str) -> Result<std::sync::Arc<dyn BvTvMapping>, String> {
    match s.trim() {
        "equal" | "equal-percentage" => Ok(std::sync::Arc::new(EqualPercentage)),
        other => {
            let Some(r) = other.strip_prefix("proportional:") else {
                return Err(format!(
                    "unknown BMD to BV/TV mapping `{s}` (expected `equal` or `proportional:R`)"
                ));
            };
            match r.trim().parse::<f64>() {
                Ok(ratio) if ratio.is_finite() && ratio > 0.0 => {
                    Ok(std::sync::Arc::new(Proportional { ratio }))
                }
                _ => Err(format!(
                    "`{s}`: the ratio of proportional:R must be a finite positive number"
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_percentage_passes_the_bmd_change_through() {
        assert_eq!(EqualPercentage.bv_tv_change_pct(-9.8), -9.8);
        assert_eq!(EqualPercentage.bv_tv_change_pct(0.0), 0.0);
    }

    #[test]
    fn parsed_mappings_scale_as_named_and_bad_ones_are_refused() {
        let m = parse_mapping("proportional:0.5").unwrap();
        assert_eq!(m.bv_tv_change_pct(-10.0), -5.0);
        assert_eq!(parse_mapping("equal").unwrap().bv_tv_change_pct(3.0), 3.0);
        assert_eq!(parse_mapping(&m.spec()).unwrap().spec(), "proportional:0.5");
        for bad in [
            "",
            "linear",
            "proportional:",
            "proportional:-1",
            "proportional:nan",
        ] {
            assert!(parse_mapping(bad).is_err(), "{bad} accepted");
        }
    }
}
