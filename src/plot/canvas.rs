//! Pixel-level drawing on an [`RgbImage`]: alpha blending, rectangles, anti-aliased thick
//! (optionally dashed) polylines and bitmap text. Everything is clipped; nothing panics on
//! out-of-range or non-finite coordinates.

use image::{Rgb, RgbImage};

use super::font::{self, ADVANCE, GLYPH_H, GLYPH_W};

/// An inclusive pixel rectangle; empty when `x0 > x1` or `y0 > y1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rect {
    pub x0: i64,
    pub y0: i64,
    pub x1: i64,
    pub y1: i64,
}

impl Rect {
    /// The rectangle with corners `(x0, y0)` and `(x1, y1)`, both inclusive.
    pub const fn new(x0: i64, y0: i64, x1: i64, y1: i64) -> Rect {
        Rect { x0, y0, x1, y1 }
    }

    /// The whole image.
    pub fn of(img: &RgbImage) -> Rect {
        Rect::new(
            0,
            0,
            i64::from(img.width()) - 1,
            i64::from(img.height()) - 1,
        )
    }

    /// The rectangle shrunk by `d` pixels on every side.
    pub fn inset(&self, d: i64) -> Rect {
        Rect::new(self.x0 + d, self.y0 + d, self.x1 - d, self.y1 - d)
    }

    /// The common part of two rectangles (possibly empty).
    pub fn intersect(&self, o: &Rect) -> Rect {
        let (x0, y0) = (self.x0.max(o.x0), self.y0.max(o.y0));
        Rect::new(x0, y0, self.x1.min(o.x1), self.y1.min(o.y1))
    }

    /// Whether the pixel lies inside.
    pub fn contains(&self, x: i64, y: i64) -> bool {
        x >= self.x0 && x <= self.x1 && y >= self.y0 && y <= self.y1
    }

    /// Whether the two rectangles share at least one pixel.
    pub fn overlaps(&self, o: &Rect) -> bool {
        let i = self.intersect(o);
        i.x0 <= i.x1 && i.y0 <= i.y1
    }
}

/// Blends `color` over the pixel with opacity `alpha` (0..=1); ignores pixels off the image.
pub(crate) fn blend(img: &mut RgbImage, x: i64, y: i64, color: [u8; 3], alpha: f64) {
    if x < 0 || y < 0 || x >= i64::from(img.width()) || y >= i64::from(img.height()) {
        return;
    }
    let a = if alpha.is_finite() {
        alpha.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let p = img.get_pixel_mut(x as u32, y as u32);
    for k in 0..3 {
        let v = f64::from(p.0[k]) * (1.0 - a) + f64::from(color[k]) * a;
        p.0[k] = v.round().clamp(0.0, 255.0) as u8;
    }
}

/// Fills `r ∩ clip ∩ image` with `color` at opacity `alpha`.
pub(crate) fn fill_rect(img: &mut RgbImage, r: Rect, clip: Rect, color: [u8; 3], alpha: f64) {
    let r = r.intersect(&clip).intersect(&Rect::of(img));
    for y in r.y0..=r.y1 {
        for x in r.x0..=r.x1 {
            if alpha >= 1.0 {
                img.put_pixel(x as u32, y as u32, Rgb(color));
            } else {
                blend(img, x, y, color, alpha);
            }
        }
    }
}

/// Draws the 1-pixel outline of `r`.
pub(crate) fn outline(img: &mut RgbImage, r: Rect, color: [u8; 3]) {
    let all = Rect::of(img);
    fill_rect(img, Rect { y1: r.y0, ..r }, all, color, 1.0);
    fill_rect(img, Rect { y0: r.y1, ..r }, all, color, 1.0);
    fill_rect(img, Rect { x1: r.x0, ..r }, all, color, 1.0);
    fill_rect(img, Rect { x0: r.x1, ..r }, all, color, 1.0);
}

/// How a line is drawn.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stroke {
    pub color: [u8; 3],
    /// Line width in pixels.
    pub width: f64,
    /// `(on, off)` dash lengths in pixels, or `None` for a solid line.
    pub dash: Option<(f64, f64)>,
}

/// Draws an anti-aliased polyline through `pts` (pixel coordinates, pixel centres at integer
/// positions), clipped to `clip`. A single point draws a dot three line widths across. The
/// dash pattern runs on along the whole polyline.
pub(crate) fn polyline(img: &mut RgbImage, pts: &[(f64, f64)], stroke: &Stroke, clip: Rect) {
    let clip = clip.intersect(&Rect::of(img));
    if let [p] = pts {
        let dot = Stroke {
            color: stroke.color,
            width: stroke.width * 3.0,
            dash: None,
        };
        segment(img, *p, *p, 0.0, &dot, clip);
    }
    let mut s0 = 0.0;
    for w in pts.windows(2) {
        segment(img, w[0], w[1], s0, stroke, clip);
        s0 += (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1);
    }
}

fn segment(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), s0: f64, st: &Stroke, clip: Rect) {
    if ![a.0, a.1, b.0, b.1, s0].iter().all(|v| v.is_finite()) || clip.x0 > clip.x1 {
        return;
    }
    let reach = st.width / 2.0 + 0.5;
    let range = |lo: f64, hi: f64, min: i64, max: i64| {
        let lo = (lo - reach).floor().clamp(min as f64, max as f64 + 1.0) as i64;
        let hi = (hi + reach).ceil().clamp(min as f64 - 1.0, max as f64) as i64;
        (lo, hi)
    };
    let (x0, x1) = range(a.0.min(b.0), a.0.max(b.0), clip.x0, clip.x1);
    let (y0, y1) = range(a.1.min(b.1), a.1.max(b.1), clip.y0, clip.y1);
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let len = len2.sqrt();
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (px, py) = (x as f64, y as f64);
            let t = if len2 > 0.0 {
                (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let d = (px - a.0 - t * dx).hypot(py - a.1 - t * dy);
            let coverage = (reach - d).min(1.0);
            if coverage <= 0.0 {
                continue;
            }
            if let Some((on, off)) = st.dash
                && on > 0.0
                && (s0 + t * len).rem_euclid(on + off.max(0.0)) >= on
            {
                continue;
            }
            blend(img, x, y, st.color, coverage);
        }
    }
}

/// Width in pixels of `text` drawn at `scale`.
pub(crate) fn text_width(text: &str, scale: u32) -> i64 {
    let n = text.chars().count() as i64;
    if n == 0 {
        0
    } else {
        n * i64::from(ADVANCE * scale) - i64::from((ADVANCE - GLYPH_W) * scale)
    }
}

/// Height in pixels of one line of text at `scale` (descenders included).
pub(crate) fn text_height(scale: u32) -> i64 {
    i64::from(GLYPH_H * scale)
}

/// Draws `text` with its top-left corner at `(x, y)`, each font pixel a `scale`×`scale` block,
/// clipped to `clip`.
pub(crate) fn text(
    img: &mut RgbImage,
    x: i64,
    y: i64,
    text: &str,
    color: [u8; 3],
    scale: u32,
    clip: Rect,
) {
    let s = i64::from(scale);
    for (i, c) in text.chars().enumerate() {
        let gx = x + i as i64 * i64::from(ADVANCE) * s;
        for (row, bits) in font::glyph(c).iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                    let px = gx + i64::from(col) * s;
                    let py = y + row as i64 * s;
                    let cell = Rect::new(px, py, px + s - 1, py + s - 1);
                    fill_rect(img, cell, clip, color, 1.0);
                }
            }
        }
    }
}
