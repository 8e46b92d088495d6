//! The app in a real X window (Xvfb) with Mesa's software Vulkan driver (lavapipe): start it
//! on the built-in structure, solve on start, take a screenshot after the SED colouring, and
//! check the picture holds the rendered mesh and the panel (not a blank or uniform image).
//! Needs `xvfb-run` (tests/run.sh installs it).

use std::process::Command;

use crate::common::bin;

#[test]
fn app_renders_the_structure_and_panel_in_a_real_window() {
    let xvfb = Command::new("sh")
        .args(["-c", "command -v xvfb-run"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        xvfb,
        "xvfb-run is not installed: run tests/run.sh, which installs xvfb, mesa-vulkan-drivers and libvulkan1"
    );
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let exe = bin().get_program().to_owned();
    let out = Command::new("timeout")
        .arg("600")
        .arg("xvfb-run")
        .args(["-a", "-s", "-screen 0 1600x900x24"])
        .arg(&exe)
        .args(["--screenshot", shot.to_str().unwrap(), "--frames", "30"])
        .arg("--solve-on-start")
        .output()
        .expect("run the app under xvfb-run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "app exited with {:?}: {stderr}",
        out.status
    );
    let img = image::open(&shot).expect("screenshot PNG").to_rgb8();
    let (w, h) = img.dimensions();
    assert!(w >= 800 && h >= 500, "{w}x{h}");
    let luminance =
        |p: &image::Rgb<u8>| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
    let stats = |x0: u32, x1: u32| {
        let mut n = 0.0;
        let mut sum = 0.0;
        let mut sq = 0.0;
        let mut colours = std::collections::HashSet::new();
        for y in 0..h {
            for x in x0..x1 {
                let p = img.get_pixel(x, y);
                let l = luminance(p);
                n += 1.0;
                sum += l;
                sq += l * l;
                colours.insert((p[0] >> 3, p[1] >> 3, p[2] >> 3));
            }
        }
        let mean = sum / n;
        ((sq / n - mean * mean).max(0.0).sqrt(), colours.len())
    };
    // The side panel sits on the left third, the 3-D view on the rest.
    let (panel_sd, panel_colours) = stats(0, w / 4);
    let (view_sd, view_colours) = stats(w / 3, w);
    eprintln!(
        "panel: sd {panel_sd:.1}, {panel_colours} colours; view: sd {view_sd:.1}, {view_colours} colours"
    );
    assert!(
        panel_sd > 8.0 && panel_colours > 20,
        "the panel looks empty"
    );
    assert!(
        view_sd > 8.0 && view_colours > 200,
        "the 3-D view looks empty"
    );
    // The SED colour map (viridis) puts saturated greens/yellows/purples on the mesh.
    let saturated = img
        .pixels()
        .filter(|p| {
            let max = p.0.iter().copied().max().unwrap() as i32;
            let min = p.0.iter().copied().min().unwrap() as i32;
            max - min > 80
        })
        .count();
    assert!(
        saturated > 2000,
        "no colour-mapped mesh visible ({saturated} saturated pixels)"
    );
    assert!(
        stderr.contains("frame"),
        "the app reports its frame times: {stderr}"
    );
}
