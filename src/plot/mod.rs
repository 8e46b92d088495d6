//! Line charts rendered to PNG.
//!
//! A small, dependency-free renderer of publication-style line charts (used by
//! `osteolab remodel --out DIR` for "BMD change (%) against day" with the scenario phases
//! shaded): nice 1-2-5 axis ticks, light grid, translucent labelled vertical bands, solid or
//! dashed anti-aliased series, a legend, and text in a built-in bitmap font ([`font`]).
//!
//! ```no_run
//! use osteolab::plot::{Band, LineChart, Series};
//! let chart = LineChart {
//!     title: "Vertebral BMD".into(),
//!     x_label: "day".into(),
//!     y_label: "BMD change (%)".into(),
//!     series: vec![Series::new("trabecular", [31, 119, 180], vec![(0.0, 0.0), (180.0, -9.5)])],
//!     bands: vec![Band::new(0.0, 180.0, "spaceflight", [214, 39, 40])],
//!     zero_line: true,
//! };
//! chart.write_png("bmd.png".as_ref(), 1000, 600).unwrap();
//! ```

mod axis;
mod canvas;
pub mod font;

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

pub use axis::{Ticks, nice_step, nice_ticks};
use canvas::{Rect, Stroke};

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Line colour (sRGB).
    pub color: [u8; 3],
    /// Data points `(x, y)`, joined in the given order.
    pub points: Vec<(f64, f64)>,
    /// Draw the line dashed instead of solid.
    pub dashed: bool,
}

impl Series {
    /// A solid series.
    pub fn new(name: impl Into<String>, color: [u8; 3], points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            color,
            points,
            dashed: false,
        }
    }

    /// The same series drawn dashed.
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// A shaded vertical band over `x0..x1` (data units), drawn translucent with its label at the
/// top of the plot area.
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    /// One edge in data units (the edges may come in either order).
    pub x0: f64,
    /// The other edge in data units.
    pub x1: f64,
    /// Text drawn at the top of the band; may be empty.
    pub label: String,
    /// Shading colour (sRGB); drawn at low opacity.
    pub color: [u8; 3],
}

impl Band {
    /// A band over `x0..x1`.
    pub fn new(x0: f64, x1: f64, label: impl Into<String>, color: [u8; 3]) -> Self {
        Band {
            x0,
            x1,
            label: label.into(),
            color,
        }
    }
}

/// A line chart: series over shaded bands, with axes, grid, title and legend.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineChart {
    /// Title centred above the plot; may be empty.
    pub title: String,
    /// Label centred below the x axis; may be empty.
    pub x_label: String,
    /// Label of the y axis, drawn horizontally above it; may be empty.
    pub y_label: String,
    /// The lines, drawn in order (later ones on top) and listed in the legend.
    pub series: Vec<Series>,
    /// Shaded vertical bands, drawn translucent over the grid and beneath the series.
    pub bands: Vec<Band>,
    /// Draw a horizontal line at y = 0 when it lies within the axis range.
    pub zero_line: bool,
}

/// Why a chart could not be rendered or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No series, or no series has any points.
    #[error("nothing to plot: the chart has no data points")]
    Empty,
    /// A series contains NaN or an infinity.
    #[error("series \"{series}\" has a non-finite value at point {index}")]
    NonFinite {
        /// Name of the offending series.
        series: String,
        /// Index of the first bad point.
        index: usize,
    },
    /// A band edge is NaN or an infinity.
    #[error("band \"{band}\" has a non-finite edge")]
    NonFiniteBand {
        /// Label of the offending band.
        band: String,
    },
    /// The image is too small to hold the axes, labels and a usable plot area.
    #[error("a {width}x{height} image is too small for this chart")]
    TooSmall {
        /// Requested width in pixels.
        width: u32,
        /// Requested height in pixels.
        height: u32,
    },
    /// The image would exceed [`MAX_PIXELS`] pixels or 20000 pixels on a side.
    #[error("a {width}x{height} image is too large")]
    TooLarge {
        /// Requested width in pixels.
        width: u32,
        /// Requested height in pixels.
        height: u32,
    },
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Encode(#[from] image::ImageError),
    /// Writing the file failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The target file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Largest image [`LineChart::render`] accepts, in pixels.
pub const MAX_PIXELS: u64 = 64_000_000;

const SCALE: u32 = 2; // font pixels are drawn 2x2
const PAD: i64 = 10;
const TICK: i64 = 5;
const LINE_WIDTH: f64 = 2.0;
const DASH: (f64, f64) = (9.0, 5.0);
const BAND_ALPHA: f64 = 0.16;
const SAMPLE_W: i64 = 28; // legend line sample
const INK: [u8; 3] = [25, 25, 25];
const FRAME: [u8; 3] = [60, 60, 60];
const GRID: [u8; 3] = [225, 225, 225];
const ZERO: [u8; 3] = [110, 110, 110];
const WHITE: [u8; 3] = [255, 255, 255];

/// Where everything goes; computed from the data and the image size.
#[derive(Debug)]
struct Layout {
    /// The plot frame; data are drawn strictly inside it.
    plot: Rect,
    x: Ticks,
    y: Ticks,
    title_y: i64,
    y_label_y: i64,
    x_tick_y: i64,
    x_label_y: i64,
    /// Top-left corners of the band labels, in band order.
    band_labels: Vec<(i64, i64)>,
    legend: Rect,
}

impl Layout {
    fn sx(&self, x: f64) -> f64 {
        let p = &self.plot;
        p.x0 as f64 + (x - self.x.min) / (self.x.max - self.x.min) * (p.x1 - p.x0) as f64
    }

    fn sy(&self, y: f64) -> f64 {
        let p = &self.plot;
        p.y1 as f64 - (y - self.y.min) / (self.y.max - self.y.min) * (p.y1 - p.y0) as f64
    }

    /// Pixel columns covered by a band (may be empty).
    fn band_columns(&self, b: &Band) -> (i64, i64) {
        let (a, c) = (self.sx(b.x0.min(b.x1)), self.sx(b.x0.max(b.x1)));
        let inner = self.plot.inset(1);
        let (a, c) = (
            a.round().max(inner.x0 as f64),
            c.round().min(inner.x1 as f64),
        );
        (a as i64, c as i64)
    }
}

impl LineChart {
    /// Renders the chart into a `width`×`height` RGB image.
    pub fn render(&self, width: u32, height: u32) -> Result<RgbImage, PlotError> {
        let l = self.layout(width, height)?;
        let mut img = RgbImage::from_pixel(width, height, Rgb(WHITE));
        let all = Rect::of(&img);
        let inner = l.plot.inset(1);
        let th = canvas::text_height(SCALE);

        // Grid, then translucent bands over it, then the zero line.
        let (xs, ys) = (l.x.values(), l.y.values());
        for &v in &xs {
            let x = l.sx(v).round() as i64;
            canvas::fill_rect(
                &mut img,
                Rect::new(x, inner.y0, x, inner.y1),
                inner,
                GRID,
                1.0,
            );
        }
        for &v in &ys {
            let y = l.sy(v).round() as i64;
            canvas::fill_rect(
                &mut img,
                Rect::new(inner.x0, y, inner.x1, y),
                inner,
                GRID,
                1.0,
            );
        }
        for b in &self.bands {
            let (x0, x1) = l.band_columns(b);
            let r = Rect::new(x0, inner.y0, x1, inner.y1);
            canvas::fill_rect(&mut img, r, inner, b.color, BAND_ALPHA);
        }
        for (b, &(x, y)) in self.bands.iter().zip(&l.band_labels) {
            let dark = b.color.map(|c| (f64::from(c) * 0.55) as u8);
            canvas::text(&mut img, x, y, &b.label, dark, SCALE, inner);
        }
        if self.zero_line && l.y.min < 0.0 && l.y.max > 0.0 {
            let y = l.sy(0.0).round() as i64;
            canvas::fill_rect(
                &mut img,
                Rect::new(inner.x0, y, inner.x1, y),
                inner,
                ZERO,
                1.0,
            );
        }

        for s in &self.series {
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (l.sx(x), l.sy(y))).collect();
            canvas::polyline(&mut img, &pts, &stroke(s), inner);
        }

        // Frame, ticks and tick labels.
        canvas::outline(&mut img, l.plot, FRAME);
        for &v in &xs {
            let x = l.sx(v).round() as i64;
            let tick = Rect::new(x, l.plot.y1, x, l.plot.y1 + TICK);
            canvas::fill_rect(&mut img, tick, all, FRAME, 1.0);
            let label = l.x.label(v);
            let lx = x - canvas::text_width(&label, SCALE) / 2;
            canvas::text(&mut img, lx, l.x_tick_y, &label, INK, SCALE, all);
        }
        for &v in &ys {
            let y = l.sy(v).round() as i64;
            let tick = Rect::new(l.plot.x0 - TICK, y, l.plot.x0, y);
            canvas::fill_rect(&mut img, tick, all, FRAME, 1.0);
            let label = l.y.label(v);
            let lx = l.plot.x0 - TICK - 4 - canvas::text_width(&label, SCALE);
            canvas::text(&mut img, lx, y - th / 2 + 2, &label, INK, SCALE, all);
        }

        // Titles: the title in faux bold, the y label above the axis, the x label below.
        let tx = (i64::from(width) - canvas::text_width(&self.title, SCALE)) / 2;
        for dx in 0..2 {
            canvas::text(&mut img, tx + dx, l.title_y, &self.title, INK, SCALE, all);
        }
        canvas::text(&mut img, PAD, l.y_label_y, &self.y_label, INK, SCALE, all);
        let xc = (l.plot.x0 + l.plot.x1) / 2 - canvas::text_width(&self.x_label, SCALE) / 2;
        canvas::text(&mut img, xc, l.x_label_y, &self.x_label, INK, SCALE, all);

        // Legend.
        let (g, clip) = (l.legend, l.legend.inset(1));
        canvas::fill_rect(&mut img, g, inner, WHITE, 0.9);
        canvas::outline(&mut img, g, [170, 170, 170]);
        for (i, s) in self.series.iter().enumerate() {
            let y = g.y0 + 6 + i as i64 * (th + 4);
            let ym = (y + th / 2 - 2) as f64;
            let x = g.x0 + 8;
            let sample = [(x as f64, ym), ((x + SAMPLE_W) as f64, ym)];
            canvas::polyline(&mut img, &sample, &stroke(s), clip);
            canvas::text(&mut img, x + SAMPLE_W + 8, y, &s.name, INK, SCALE, clip);
        }
        Ok(img)
    }

    /// Renders the chart and writes it as a PNG file atomically (temporary file + rename).
    pub fn write_png(&self, path: &Path, width: u32, height: u32) -> Result<(), PlotError> {
        let img = self.render(width, height)?;
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, image::ImageFormat::Png)?;
        crate::atomic::write_bytes_atomic(path, bytes.get_ref()).map_err(|source| PlotError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Validates the data and places every element.
    fn layout(&self, width: u32, height: u32) -> Result<Layout, PlotError> {
        if u64::from(width) * u64::from(height) > MAX_PIXELS || width.max(height) > 20_000 {
            return Err(PlotError::TooLarge { width, height });
        }
        let too_small = PlotError::TooSmall { width, height };
        if width < 160 || height < 120 {
            return Err(too_small);
        }
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for s in &self.series {
            let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
            if let Some(index) = s.points.iter().position(|p| !finite(p)) {
                let series = s.name.clone();
                return Err(PlotError::NonFinite { series, index });
            }
            for &(x, y) in &s.points {
                (x_lo, x_hi, y_lo, y_hi) = (x_lo.min(x), x_hi.max(x), y_lo.min(y), y_hi.max(y));
            }
        }
        if x_lo > x_hi {
            return Err(PlotError::Empty);
        }
        for b in &self.bands {
            if !(b.x0.is_finite() && b.x1.is_finite()) {
                let band = b.label.clone();
                return Err(PlotError::NonFiniteBand { band });
            }
            (x_lo, x_hi) = (x_lo.min(b.x0.min(b.x1)), x_hi.max(b.x0.max(b.x1)));
        }

        // Vertical placement.
        let th = canvas::text_height(SCALE);
        let (w, h) = (i64::from(width), i64::from(height));
        let title_y = PAD;
        let mut top = PAD + if self.title.is_empty() { 0 } else { th + 8 };
        let y_label_y = top;
        top += if self.y_label.is_empty() {
            th / 2
        } else {
            th + 6
        };
        let x_label_y = h - PAD - th;
        let bottom = if self.x_label.is_empty() {
            h - PAD
        } else {
            x_label_y - 6
        };
        let x_tick_y = bottom - th;
        let (y0, y1) = (top, x_tick_y - TICK - 4);
        if y1 - y0 < 40 {
            return Err(too_small);
        }

        // y axis: pad the data a little and leave headroom for the band labels.
        let span = y_hi - y_lo;
        let (mut lo, mut hi) = (y_lo - 0.05 * span, y_hi + 0.05 * span);
        let labelled = self.bands.iter().any(|b| !b.label.is_empty());
        if labelled && span > 0.0 {
            let frac = ((th + 10) as f64 / (y1 - y0) as f64).min(0.5);
            hi += (hi - lo) * frac / (1.0 - frac);
        }
        if !(lo.is_finite() && hi.is_finite()) {
            (lo, hi) = (y_lo, y_hi);
        }
        let y = nice_ticks(lo, hi, ((y1 - y0) / 50).clamp(2, 10) as usize);
        let label_w = |t: &Ticks| {
            let widths = t
                .values()
                .into_iter()
                .map(|v| canvas::text_width(&t.label(v), SCALE));
            widths.max().unwrap_or(0)
        };
        let x0 = PAD + label_w(&y) + 4 + TICK;

        // x axis: fewer ticks until the labels no longer collide.
        let mut x1 = w - 1 - 2 * PAD;
        let mut target = ((x1 - x0) / 90).clamp(2, 10);
        let x = loop {
            let t = nice_ticks(x_lo, x_hi, target as usize);
            let spacing = (x1 - x0) as f64 * t.step / (t.max - t.min);
            if target <= 1 || label_w(&t) as f64 + 16.0 <= spacing {
                break t;
            }
            target -= 1;
        };
        let last_w = canvas::text_width(&x.label(x.max), SCALE);
        x1 = x1.min(w - 1 - last_w / 2 - 4);
        if x1 - x0 < 40 {
            return Err(too_small);
        }
        let (plot, legend, band_labels) =
            (Rect::new(x0, y0, x1, y1), Rect::new(0, 0, -1, -1), vec![]);
        let mut l = Layout {
            plot,
            x,
            y,
            title_y,
            y_label_y,
            x_tick_y,
            x_label_y,
            band_labels,
            legend,
        };

        // Band labels: centred on the band, pushed down a row when they would overlap.
        let mut placed: Vec<Rect> = Vec::new();
        for b in &self.bands {
            let tw = canvas::text_width(&b.label, SCALE);
            let (c0, c1) = l.band_columns(b);
            let lx = ((c0 + c1) / 2 - tw / 2).min(x1 - 4 - tw).max(x0 + 4);
            let mut r = Rect::new(lx - 4, y0 + 5, lx + tw + 4, y0 + 5 + th);
            for _ in 0..8 {
                if b.label.is_empty() || !placed.iter().any(|p| p.overlaps(&r)) {
                    break;
                }
                (r.y0, r.y1) = (r.y0 + th + 2, r.y1 + th + 2);
            }
            if !b.label.is_empty() {
                placed.push(r);
            }
            l.band_labels.push((lx, r.y0));
        }
        let top = placed.iter().map(|r| r.y1 - 4).fold(y0, i64::max) + 8;
        l.legend = self.place_legend(&l, top);
        Ok(l)
    }

    /// The legend box in the plot corner (below the band labels at the top) that hides the
    /// fewest points sampled along the lines; top right wins ties.
    fn place_legend(&self, l: &Layout, top: i64) -> Rect {
        let th = canvas::text_height(SCALE);
        let name_w = self
            .series
            .iter()
            .map(|s| canvas::text_width(&s.name, SCALE));
        let w = 8 + SAMPLE_W + 8 + name_w.max().unwrap_or(0) + 8;
        let h = 8 + self.series.len() as i64 * (th + 4);
        let p = l.plot;
        let (left, right, bottom) = (p.x0 + 8, p.x1 - 8 - w, p.y1 - 8 - h);
        let corners = [(right, top), (left, top), (right, bottom), (left, bottom)];
        let mut samples = Vec::new();
        for s in &self.series {
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (l.sx(x), l.sy(y))).collect();
            samples.extend(pts.iter().map(|&(x, y)| (x as i64, y as i64)));
            for w in pts.windows(2) {
                let (dx, dy) = (w[1].0 - w[0].0, w[1].1 - w[0].1);
                let n = (dx.hypot(dy) / 4.0).clamp(1.0, 1000.0) as usize;
                samples.extend((1..n).map(|k| {
                    let t = k as f64 / n as f64;
                    ((w[0].0 + t * dx) as i64, (w[0].1 + t * dy) as i64)
                }));
            }
        }
        let hidden = |r: &Rect| {
            samples
                .iter()
                .filter(|&&(x, y)| r.inset(-3).contains(x, y))
                .count()
        };
        let boxes = corners.map(|(x, y)| Rect::new(x, y, x + w, y + h));
        let best = boxes.into_iter().min_by_key(hidden).unwrap_or(boxes[0]);
        best.intersect(&p.inset(1)) // an overfull legend is cut off at the frame
    }
}

fn stroke(s: &Series) -> Stroke {
    Stroke {
        color: s.color,
        width: LINE_WIDTH,
        dash: s.dashed.then_some(DASH),
    }
}

#[cfg(test)]
mod tests;
