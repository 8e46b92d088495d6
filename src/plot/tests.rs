use std::collections::HashSet;

use super::*;

const RED: [u8; 3] = [200, 30, 30];
const BLUE: [u8; 3] = [30, 60, 200];

fn bmd(day: f64, depth: f64) -> f64 {
    if day <= 180.0 {
        -depth * day / 180.0
    } else {
        -depth * (0.4 + 0.6 * (-(day - 180.0) / 120.0).exp())
    }
}

/// A BMD-like curve: linear loss to `-depth` % over 180 days, then partial recovery.
fn curve(name: &str, color: [u8; 3], depth: f64, step: usize) -> Series {
    let points = (0..=580)
        .step_by(step)
        .map(|d| (f64::from(d), bmd(f64::from(d), depth)));
    Series::new(name, color, points.collect())
}

/// Two series (one dashed) over two bands that cover only part of the x range.
fn chart() -> LineChart {
    LineChart {
        title: "BMD change".into(),
        x_label: "day".into(),
        y_label: "BMD change (%)".into(),
        series: vec![
            curve("trabecular", RED, 10.3, 10),
            curve("cortical", BLUE, 4.0, 10).dashed(),
        ],
        bands: vec![
            Band::new(100.0, 200.0, "flight", [214, 39, 40]),
            Band::new(350.0, 420.0, "rehab", [44, 160, 44]),
        ],
        zero_line: true,
    }
}

fn px(img: &RgbImage, x: i64, y: i64) -> [u8; 3] {
    img.get_pixel(x as u32, y as u32).0
}

#[test]
fn series_colours_appear_inside_the_plot_area() {
    let c = chart();
    let (img, l) = (c.render(900, 560).unwrap(), c.layout(900, 560).unwrap());
    let inner = l.plot.inset(1);
    for color in [RED, BLUE] {
        let mut n = 0;
        for y in inner.y0..=inner.y1 {
            for x in inner.x0..=inner.x1 {
                n += usize::from(!l.legend.contains(x, y) && px(&img, x, y) == color);
            }
        }
        assert!(n > 100, "{color:?}: only {n} pixels");
    }
    // Nothing of the series outside the frame (the legend lies inside it).
    for y in 0..i64::from(img.height()) {
        for x in 0..i64::from(img.width()) {
            if !l.plot.contains(x, y) {
                assert!(![RED, BLUE].contains(&px(&img, x, y)), "({x}, {y})");
            }
        }
    }
}

#[test]
fn bands_shade_only_their_x_span() {
    let c = chart();
    let (img, l) = (c.render(900, 560).unwrap(), c.layout(900, 560).unwrap());
    let spans: Vec<(i64, i64)> = c.bands.iter().map(|b| l.band_columns(b)).collect();
    let inner = l.plot.inset(1);
    let probe = inner.y1 - 1; // below the data, above the frame, off the horizontal grid
    let (mut shaded, mut plain) = (0, 0);
    for x in inner.x0..=inner.x1 {
        if l.legend.inset(-2).contains(x, probe) {
            continue;
        }
        let p = px(&img, x, probe);
        if spans.iter().any(|&(a, b)| x > a && x < b) {
            assert!(p != WHITE && p != GRID, "x={x}: band not shaded: {p:?}");
            shaded += 1;
        } else if spans.iter().all(|&(a, b)| x < a - 1 || x > b + 1) {
            assert!(
                p == WHITE || p == GRID,
                "x={x}: background changed outside bands: {p:?}"
            );
            plain += 1;
        }
    }
    assert!(shaded > 50 && plain > 200, "{shaded} shaded, {plain} plain");
}

#[test]
fn rendered_image_is_not_blank() {
    let img = chart().render(640, 400).unwrap();
    let colours: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(colours.len() >= 8, "{} colours", colours.len());
    let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
    assert!(dark > 1000, "too little text and frame: {dark} dark pixels");
}

#[test]
fn non_finite_data_names_the_series() {
    let mut c = chart();
    c.series.push(Series::new(
        "broken",
        RED,
        vec![(0.0, 1.0), (1.0, f64::NAN)],
    ));
    match c.render(640, 400) {
        Err(PlotError::NonFinite { series, index }) => {
            assert_eq!((series.as_str(), index), ("broken", 1))
        }
        other => panic!("{other:?}"),
    }
    c.series[2].points = vec![(f64::INFINITY, 0.0)];
    let err = c.render(640, 400).unwrap_err();
    assert!(err.to_string().contains("\"broken\""), "{err}");

    let mut c = chart();
    c.bands[1].x1 = f64::NEG_INFINITY;
    assert!(
        matches!(c.render(640, 400), Err(PlotError::NonFiniteBand { band }) if band == "rehab")
    );
}

#[test]
fn empty_and_badly_sized_charts_are_errors() {
    assert!(matches!(
        LineChart::default().render(640, 400),
        Err(PlotError::Empty)
    ));
    let mut c = chart();
    c.series.iter_mut().for_each(|s| s.points.clear());
    assert!(matches!(c.render(640, 400), Err(PlotError::Empty)));
    assert!(matches!(
        chart().render(100, 400),
        Err(PlotError::TooSmall { .. })
    ));
    assert!(matches!(
        chart().render(0, 0),
        Err(PlotError::TooSmall { .. })
    ));
    assert!(matches!(
        chart().render(100_000, 100_000),
        Err(PlotError::TooLarge { .. })
    ));
}

#[test]
fn degenerate_data_renders_without_panicking() {
    let one = |points: Vec<(f64, f64)>| LineChart {
        series: vec![Series::new("s", RED, points)],
        ..LineChart::default()
    };
    let cases = [
        one(vec![(3.0, 7.0)]),
        one(vec![(0.0, 2.0), (10.0, 2.0)]),
        one(vec![(5.0, -1.0), (5.0, -3.0)]),
        one(vec![(-50.0, -20.0), (-10.0, -60.0)]),
        one(vec![(0.0, 1e-12), (1e-9, 2e-12)]),
        one(vec![(-1e300, 1e300), (1e300, -1e300)]),
        one(vec![(1e9, 1e9), (2e9, 3e9)]),
    ];
    for c in &cases {
        for (w, h) in [(160, 120), (640, 400), (2000, 300)] {
            match c.render(w, h) {
                Ok(img) => assert_eq!(img.dimensions(), (w, h)),
                Err(PlotError::TooSmall { .. }) => {}
                Err(e) => panic!("{c:?} at {w}x{h}: {e}"),
            }
        }
    }
    // A single point still shows up.
    let img = cases[0].render(400, 300).unwrap();
    assert!(img.pixels().any(|p| p.0 == RED));

    // Long labels, many series, reversed and out-of-range bands, odd characters.
    let mut c = chart();
    c.title = "é∑ a very long title that does not fit the image at all, really not at all".into();
    c.bands.push(Band::new(900.0, -300.0, "wide", [0, 0, 0]));
    c.bands.push(Band::new(5.0, 5.0, "", [9, 9, 9]));
    for i in 0..30 {
        c.series.push(Series::new(
            format!("series {i}"),
            [i as u8 * 8, 0, 0],
            vec![(0.0, 0.0)],
        ));
    }
    for (w, h) in [(160, 120), (300, 200), (1200, 800)] {
        let _ = c.render(w, h);
    }
}

#[test]
fn write_png_writes_a_readable_file_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bmd.png");
    chart().write_png(&path, 800, 500).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 500));
    assert_eq!(img, chart().render(800, 500).unwrap());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["bmd.png"], "temporary file left behind");

    let missing = dir.path().join("no/such/dir/bmd.png");
    match chart().write_png(&missing, 800, 500) {
        Err(PlotError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_glyph_fits_its_cell() {
    for c in ' '..='~' {
        let g = font::glyph(c);
        assert!(g.iter().all(|&row| row < 1 << font::GLYPH_W), "{c:?}");
        assert!(c == ' ' || g.iter().any(|&row| row != 0), "{c:?} is blank");
    }
    assert_eq!(font::glyph('\u{e9}'), font::glyph('?'));
}

/// Renders a realistic chart and a font sheet for visual inspection when
/// `OSTEOLAB_PLOT_SAMPLE` names an output PNG (the sheet goes beside it as `*_font.png`).
#[test]
fn sample_chart_and_font_sheet() {
    let c = LineChart {
        title: "Vertebral BMD: 180 d spaceflight, 400 d recovery".into(),
        x_label: "time (day)".into(),
        y_label: "BMD change (%)".into(),
        series: vec![
            curve("trabecular", [31, 119, 180], 10.3, 5),
            curve("cortical", [255, 127, 14], 4.2, 5),
            curve("no countermeasure", [90, 90, 90], 12.5, 5).dashed(),
        ],
        bands: vec![
            Band::new(0.0, 180.0, "spaceflight", [214, 39, 40]),
            Band::new(180.0, 580.0, "recovery (1 g)", [44, 160, 44]),
        ],
        zero_line: true,
    };
    assert!(c.render(1000, 600).is_ok());
    let mut sheet = RgbImage::from_pixel(420, 330, Rgb(WHITE));
    let all = Rect::of(&sheet);
    let chars: Vec<char> = (' '..='~').collect();
    for (row, line) in chars.chunks(16).enumerate() {
        let line: String = line.iter().collect();
        canvas::text(&mut sheet, 10, 10 + row as i64 * 40, &line, INK, 4, all);
    }
    let pangram = "Sphinx of black quartz, judge my vow: -10.3% (n=5)";
    canvas::text(&mut sheet, 10, 260, pangram, INK, 1, all);
    let units = "BMD change (%) -12.5 +0.4 day";
    canvas::text(&mut sheet, 10, 280, units, INK, SCALE, all);
    if let Some(path) = std::env::var_os("OSTEOLAB_PLOT_SAMPLE") {
        let path = PathBuf::from(path);
        c.write_png(&path, 1000, 600).unwrap();
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        sheet
            .save(path.with_file_name(format!("{stem}_font.png")))
            .unwrap();
    }
}
