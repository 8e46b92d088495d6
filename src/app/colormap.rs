//! Colour maps for scalar fields on surfaces: viridis for the strain energy density of the
//! micro view, a diverging cool–warm map for the BMD change of the vertebra view.
//!
//! Viridis (van der Walt & Smith, matplotlib 2.0 default, 2015): perceptually uniform, readable
//! in greyscale and by viewers with colour-vision deficiencies. Stored as the 11 stops at
//! t = 0, 0.1, …, 1 of the reference 256-entry table (sRGB), linearly interpolated; the
//! interpolation error against the full table is below 2/255 per channel.

/// Viridis at t = 0.0, 0.1, …, 1.0 (sRGB, 8-bit values of the matplotlib table).
const VIRIDIS_STOPS: [[u8; 3]; 11] = [
    [68, 1, 84],
    [72, 36, 117],
    [65, 68, 135],
    [53, 95, 141],
    [42, 120, 142],
    [33, 145, 140],
    [34, 168, 132],
    [68, 191, 112],
    [122, 209, 81],
    [189, 223, 38],
    [253, 231, 37],
];

/// Viridis colour at `t` in [0, 1] (clamped; NaN maps to 0), as sRGB components in [0, 1].
pub fn viridis_srgb(t: f32) -> [f32; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * 10.0;
    let i = (x.floor() as usize).min(9);
    let f = x - i as f32;
    let a = VIRIDIS_STOPS[i];
    let b = VIRIDIS_STOPS[i + 1];
    std::array::from_fn(|c| (a[c] as f32 * (1.0 - f) + b[c] as f32 * f) / 255.0)
}

/// Moreland's "smooth cool warm" diverging map (Moreland 2009, *Diverging Color Maps for
/// Scientific Visualization*; matplotlib's `coolwarm`) at t = 0, 0.125, …, 1 (sRGB, 8-bit):
/// blue for loss, a light neutral grey at no change, red for gain. Linearly interpolated;
/// both halves are monotone in lightness towards the centre.
const COOL_WARM_STOPS: [[u8; 3]; 9] = [
    [59, 76, 192],
    [98, 130, 234],
    [141, 176, 254],
    [184, 208, 249],
    [221, 221, 221],
    [245, 196, 173],
    [244, 154, 123],
    [222, 96, 77],
    [180, 4, 38],
];

/// The cool–warm colour at `t` in [0, 1] (clamped; NaN maps to the centre), sRGB in [0, 1].
pub fn cool_warm_srgb(t: f32) -> [f32; 3] {
    let t = if t.is_nan() { 0.5 } else { t.clamp(0.0, 1.0) };
    let x = t * 8.0;
    let i = (x.floor() as usize).min(7);
    let f = x - i as f32;
    let a = COOL_WARM_STOPS[i];
    let b = COOL_WARM_STOPS[i + 1];
    std::array::from_fn(|c| (a[c] as f32 * (1.0 - f) + b[c] as f32 * f) / 255.0)
}

/// A diverging scale with its neutral colour at zero: `min` (< 0) maps to the cool end,
/// `max` (> 0) to the warm end, each half linearly, so an asymmetric range such as
/// −15 … +5 % keeps "no change" neutral.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DivergingScale {
    pub min: f32,
    pub max: f32,
}

impl DivergingScale {
    /// The scale, with the ends forced to either side of zero.
    pub fn new(min: f32, max: f32) -> Self {
        let min = if min.is_finite() && min < 0.0 {
            min
        } else {
            -1.0
        };
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        Self { min, max }
    }

    /// Position of `value` on the colour map, in [0, 1] (NaN stays NaN).
    pub fn normalize(&self, value: f32) -> f32 {
        if value.is_nan() {
            return f32::NAN;
        }
        let t = if value < 0.0 {
            0.5 * (1.0 - value / self.min)
        } else {
            0.5 + 0.5 * value / self.max
        };
        t.clamp(0.0, 1.0)
    }

    /// The value at position `t` in [0, 1] (inverse of [`DivergingScale::normalize`]).
    pub fn value_at(&self, t: f32) -> f32 {
        if t < 0.5 {
            self.min * (1.0 - 2.0 * t)
        } else {
            self.max * (2.0 * t - 1.0)
        }
    }

    /// sRGB colour of `value`.
    pub fn srgb(&self, value: f32) -> [f32; 3] {
        cool_warm_srgb(self.normalize(value))
    }
}

/// How a scalar is mapped to [0, 1] before colouring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScaleKind {
    /// log10 of the value between the range ends (values ≤ 0 clamp to the low end).
    #[default]
    Log,
    Linear,
}

/// A colour scale: a kind and the value range it spans.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorScale {
    pub kind: ScaleKind,
    pub min: f32,
    pub max: f32,
}

impl ColorScale {
    /// A scale over the robust range of `values` (2nd to 98th percentile, so that a few
    /// stress-concentration vertices do not wash out the map). For a log scale the low end is
    /// kept above 1e-4 × the high end.
    pub fn robust(kind: ScaleKind, values: &[f32]) -> Self {
        let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self {
                kind,
                min: 0.0,
                max: 1.0,
            };
        }
        v.sort_by(f32::total_cmp);
        let pick = |q: f32| v[((v.len() - 1) as f32 * q).round() as usize];
        let (mut min, mut max) = (pick(0.02), pick(0.98));
        if kind == ScaleKind::Log {
            let top = v.iter().rev().find(|x| **x > 0.0).copied().unwrap_or(1.0);
            max = if max > 0.0 { max } else { top };
            min = min.max(max * 1e-4);
        }
        if max <= min {
            max = if min == 0.0 {
                1.0
            } else {
                min.abs() * (1.0 + 1e-3) + min
            };
        }
        Self { kind, min, max }
    }

    /// Position of `value` on the scale, in [0, 1].
    pub fn normalize(&self, value: f32) -> f32 {
        let t = match self.kind {
            ScaleKind::Linear => (value - self.min) / (self.max - self.min),
            ScaleKind::Log => {
                let v = value.max(self.min);
                (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
            }
        };
        if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The value at position `t` in [0, 1] (inverse of [`ColorScale::normalize`]).
    pub fn value_at(&self, t: f32) -> f32 {
        match self.kind {
            ScaleKind::Linear => self.min + t * (self.max - self.min),
            ScaleKind::Log => {
                10f32.powf(self.min.log10() + t * (self.max.log10() - self.min.log10()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_match_the_reference_table() {
        // Exact at the stops (tolerance: one 8-bit step).
        let lo = viridis_srgb(0.0);
        let hi = viridis_srgb(1.0);
        assert!((lo[0] - 68.0 / 255.0).abs() < 1.0 / 255.0);
        assert!((hi[1] - 231.0 / 255.0).abs() < 1.0 / 255.0);
        assert_eq!(viridis_srgb(-3.0), lo);
        assert_eq!(viridis_srgb(f32::NAN), lo);
    }

    #[test]
    fn viridis_lightness_increases_monotonically() {
        // Perceptual maps must be monotone in lightness; check luma on a fine sweep.
        let luma = |c: [f32; 3]| 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        let mut prev = -1.0;
        for i in 0..=200 {
            let l = luma(viridis_srgb(i as f32 / 200.0));
            assert!(l > prev, "luma not increasing at {i}");
            prev = l;
        }
    }

    #[test]
    fn log_scale_round_trips_and_clamps() {
        let s = ColorScale {
            kind: ScaleKind::Log,
            min: 1e-3,
            max: 1e-1,
        };
        assert!((s.normalize(1e-2) - 0.5).abs() < 1e-6);
        assert_eq!(s.normalize(0.0), 0.0);
        assert_eq!(s.normalize(10.0), 1.0);
        assert!((s.value_at(0.5) - 1e-2).abs() < 1e-7);
    }

    #[test]
    fn diverging_scale_is_neutral_at_zero_and_saturates_at_the_ends() {
        let s = DivergingScale::new(-15.0, 5.0);
        assert_eq!(s.normalize(0.0), 0.5);
        assert_eq!(s.normalize(-15.0), 0.0);
        assert_eq!(s.normalize(-30.0), 0.0);
        assert_eq!(s.normalize(5.0), 1.0);
        assert!((s.normalize(-7.5) - 0.25).abs() < 1e-6);
        assert!((s.value_at(0.25) + 7.5).abs() < 1e-5);
        let grey = cool_warm_srgb(0.5);
        assert!((grey[0] - grey[2]).abs() < 1e-6, "neutral centre");
        let (cool, warm) = (s.srgb(-15.0), s.srgb(5.0));
        assert!(cool[2] > cool[0] && warm[0] > warm[2]);
        // Degenerate ranges fall back to ±1 instead of dividing by zero.
        let d = DivergingScale::new(0.0, f32::NAN);
        assert_eq!((d.min, d.max), (-1.0, 1.0));
    }

    #[test]
    fn robust_range_ignores_outliers() {
        let mut v: Vec<f32> = (1..=1000).map(|i| i as f32).collect();
        v.push(1e9);
        let s = ColorScale::robust(ScaleKind::Linear, &v);
        assert!(s.max < 1000.0 && s.min > 1.0);
    }
}
