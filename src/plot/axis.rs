//! "Nice" axis ranges and tick labels (steps of 1, 2 or 5 times a power of ten).

/// Hard cap on the number of ticks an axis ever produces.
const MAX_TICKS: usize = 50;

/// An axis range whose ends are multiples of `step`; ticks sit at every multiple in between.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ticks {
    /// Lower end of the axis (a multiple of `step`).
    pub min: f64,
    /// Upper end of the axis (a multiple of `step`).
    pub max: f64,
    /// Distance between ticks: 1, 2 or 5 times a power of ten.
    pub step: f64,
}

impl Ticks {
    /// The tick values from `min` to `max` inclusive (at most 51 of them); values within a
    /// rounding error of zero are exactly zero.
    pub fn values(&self) -> Vec<f64> {
        let n = ((self.max - self.min) / self.step).round();
        let n = if n.is_finite() && n >= 0.0 {
            (n as usize).min(MAX_TICKS)
        } else {
            0
        };
        (0..=n)
            .map(|i| {
                let v = self.min + i as f64 * self.step;
                if v.abs() < self.step * 1e-9 { 0.0 } else { v }
            })
            .collect()
    }

    /// The label of tick value `v`, with as many decimals as the step needs.
    pub fn label(&self, v: f64) -> String {
        if v == 0.0 {
            return "0".into();
        }
        let big = self.min.abs().max(self.max.abs());
        if big >= 1e7 || self.step < 1e-6 {
            return format!("{v:.2e}");
        }
        let decimals = if self.step >= 1.0 {
            0
        } else {
            (-self.step.log10() - 1e-9).ceil() as usize
        };
        format!("{v:.decimals$}")
    }
}

/// The smallest 1-2-5 step (times a power of ten) that is at least `raw`; 1 for a
/// non-positive or non-finite `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 + 1e-9 {
        1.0
    } else if f <= 2.0 + 1e-9 {
        2.0
    } else if f <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// A nice axis covering `[a, b]` (either order) with about `target` intervals at most.
/// A zero-width range is widened around its value; non-finite input gives `0..1`.
pub fn nice_ticks(a: f64, b: f64, target: usize) -> Ticks {
    if !(a.is_finite() && b.is_finite()) {
        return Ticks {
            min: 0.0,
            max: 1.0,
            step: 0.2,
        };
    }
    let (mut lo, mut hi) = if a <= b { (a, b) } else { (b, a) };
    if hi - lo <= hi.abs().max(lo.abs()) * 1e-12 {
        let pad = (lo.abs() * 0.1).max(1.0);
        (lo, hi) = (lo - pad, hi + pad);
    }
    let n = target.clamp(1, MAX_TICKS) as f64;
    // hi/n - lo/n rather than (hi - lo)/n: the difference of huge values may overflow.
    let step = nice_step(hi / n - lo / n);
    let min = (lo / step + 1e-9).floor() * step;
    let max = (hi / step - 1e-9).ceil() * step;
    Ticks { min, max, step }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_for_typical_ranges() {
        let t = nice_ticks(0.0, 580.0, 6);
        assert_eq!((t.min, t.max, t.step), (0.0, 600.0, 100.0));
        assert_eq!(t.values().len(), 7);

        let t = nice_ticks(-10.3, 0.4, 6);
        assert!(t.step == 2.0 || t.step == 5.0, "{t:?}");
        assert!(t.min <= -10.3 && t.max >= 0.4, "{t:?}");
        assert!(t.values().contains(&0.0));

        let t = nice_ticks(0.0, 1.0, 5);
        assert!((t.step - 0.2).abs() < 1e-12, "{t:?}");
        assert_eq!(t.label(t.values()[1]), "0.2");

        let t = nice_ticks(-3.0, -1.0, 4);
        assert_eq!((t.min, t.max, t.step), (-3.0, -1.0, 0.5));
        assert_eq!(t.label(-2.5), "-2.5");
    }

    #[test]
    fn nice_ticks_survive_degenerate_ranges() {
        let t = nice_ticks(5.0, 5.0, 6);
        assert!(t.min < 5.0 && t.max > 5.0 && t.step > 0.0, "{t:?}");
        let t = nice_ticks(0.0, 0.0, 6);
        assert!(t.min < 0.0 && t.max > 0.0, "{t:?}");
        let t = nice_ticks(f64::NAN, 1.0, 6);
        assert_eq!(t.values().len(), 6);
        let t = nice_ticks(-1e308, 1e308, 0);
        assert!(
            t.step.is_finite() && t.values().len() <= MAX_TICKS + 1,
            "{t:?}"
        );
        assert!(!t.label(t.max).is_empty());
    }
}
