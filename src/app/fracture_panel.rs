//! The fracture mode's panels: the run controls, progress and results table in the side
//! panel; the load–displacement curves with the damage scrubber at the bottom; the caption
//! and the damage colour bar over the 3-D view.

use bevy_egui::egui::{self, Color32, RichText};
use egui_plot::{HLine, Legend, Line, LineStyle, MarkerShape, Plot, PlotPoints, Points, VLine};

use osteolab::fracture::calibration::{
    PUBLISHED_ENERGY_POST_MJ, PUBLISHED_ENERGY_PRE_MJ, PUBLISHED_PEAK_POST_N, PUBLISHED_PEAK_PRE_N,
};
use osteolab::fracture::vertebra::FlightState;
use osteolab::runner::fracture::{COARSE_STEP_FRACTION, FINE_STEP_FRACTION, FractureSummary};
use osteolab::runner::{MicroSlot, Specimen};

use super::bridge::{Sim, UiState};
use super::fracture::{FractureState, FractureStatus, VertebraMode};
use super::fracture_scene::{FractureView, damage_srgb};
use super::micro_panel::short_label;
use super::multiscale::MultiscaleState;

const ACCENT: Color32 = Color32::from_rgb(120, 190, 255);
const WARN: Color32 = Color32::from_rgb(255, 120, 110);
const OK: Color32 = Color32::from_rgb(140, 210, 140);
const WEAK: Color32 = Color32::from_gray(170);

/// Default height of the curves panel.
pub const FRACTURE_PLOT_HEIGHT: f32 = 300.0;

/// Curve colour of each specimen.
pub fn specimen_colour(specimen: Specimen) -> Color32 {
    match specimen {
        Specimen::State(FlightState::Pre) => Color32::from_rgb(110, 175, 255),
        Specimen::State(FlightState::Post) => Color32::from_rgb(255, 125, 95),
        Specimen::State(FlightState::Recovered) => Color32::from_rgb(135, 215, 135),
        Specimen::Core => Color32::from_rgb(215, 170, 255),
    }
}

/// The switch between the vertebra view's remodeling and fracture modes.
pub fn vertebra_mode_switch(ui: &mut egui::Ui, state: &mut FractureState) {
    ui.horizontal(|ui| {
        ui.selectable_value(&mut state.mode, VertebraMode::Remodeling, "Remodeling");
        ui.selectable_value(&mut state.mode, VertebraMode::Fracture, "Fracture");
        if state.is_computing() && state.mode == VertebraMode::Remodeling {
            ui.spinner();
        }
    });
    ui.separator();
}

/// The held structure a core run would take: the real one when loaded, else the generated.
fn core_slot(ui_state: &UiState) -> Option<MicroSlot> {
    [MicroSlot::Real, MicroSlot::Generated]
        .into_iter()
        .find(|&s| ui_state.slots.get(s).model.is_some())
}

/// The side panel of the fracture mode.
pub fn fracture_panel_ui(
    ui: &mut egui::Ui,
    sim: Option<&Sim>,
    state: &mut FractureState,
    multiscale: &MultiscaleState,
    ui_state: &UiState,
) {
    ui.label(
        RichText::new("Compression to failure")
            .strong()
            .color(ACCENT),
    );
    ui.add(
        egui::Label::new(
            RichText::new(
                "The built-in vertebra at the states of spaceflight-215, compressed between \
                 rigid endplates until the load falls to 70 % of its peak (isotropic continuum \
                 damage, crack band).",
            )
            .small()
            .color(WEAK),
        )
        .wrap(),
    );
    run_section(ui, sim, state, multiscale, ui_state);
    ui.separator();
    progress_section(ui, state);
    ui.separator();
    results_section(ui, state);
}

fn run_section(
    ui: &mut egui::Ui,
    sim: Option<&Sim>,
    state: &mut FractureState,
    multiscale: &MultiscaleState,
    ui_state: &UiState,
) {
    let busy = state.is_computing();
    ui.add_enabled_ui(!busy, |ui| {
        ui.horizontal(|ui| {
            ui.label("states");
            for (i, st) in FlightState::ALL.into_iter().enumerate() {
                ui.checkbox(&mut state.states[i], st.name());
            }
        });
        ui.horizontal(|ui| {
            ui.label("step");
            ui.radio_value(
                &mut state.step_fraction,
                FINE_STEP_FRACTION,
                "fine 0.02 w₀ (≈3.5 min per state)",
            );
        });
        ui.horizontal(|ui| {
            ui.add_space(34.0);
            ui.radio_value(
                &mut state.step_fraction,
                COARSE_STEP_FRACTION,
                "coarse 0.1 w₀ (< 1 min, coarser curve)",
            );
        });
        let slot = core_slot(ui_state);
        let mut with_core = state.core.is_some() && slot.is_some();
        let label = match slot.and_then(|s| ui_state.slots.get(s).model.as_ref()) {
            Some(m) => format!(
                "also the trabecular core ({}; slow: a 64³ cube can take longer than the \
                 three vertebra curves together)",
                short_label(m)
            ),
            None => "also a trabecular core (load one in the Microstructure view)".into(),
        };
        ui.add_enabled_ui(slot.is_some(), |ui| {
            ui.checkbox(&mut with_core, label);
        });
        state.core = if with_core { slot } else { None };
    });
    ui.horizontal(|ui| {
        let nothing = !state.states.iter().any(|&b| b) && state.core.is_none();
        if let Some(sim) = sim {
            if busy {
                if ui.button("Cancel").clicked() {
                    state.cancel(sim);
                }
                ui.spinner();
            } else if ui
                .add_enabled(!nothing, egui::Button::new(RichText::new("Start").strong()))
                .clicked()
            {
                state.start(sim, multiscale);
            }
        } else {
            ui.label(RichText::new("starting the simulation thread…").weak());
        }
    });
}

fn progress_section(ui: &mut egui::Ui, state: &FractureState) {
    ui.label(RichText::new("Progress").strong().color(ACCENT));
    let colour = match &state.status {
        FractureStatus::Failed(_) => WARN,
        FractureStatus::Finished { .. } => OK,
        _ => Color32::from_gray(220),
    };
    ui.add(egui::Label::new(RichText::new(state.status.label()).color(colour)).wrap());
    let Some(info) = &state.info else {
        return;
    };
    ui.label(
        RichText::new(format!(
            "{} · step {} w₀ · set-up {:.1} s",
            info.scenario, info.step_fraction_of_onset, info.setup_seconds
        ))
        .small()
        .color(WEAK),
    );
    if let Some(i) = state.current
        && let (Some(s), Some(spec)) = (state.specimens.get(i), info.specimens.get(i))
    {
        match s.points.last() {
            Some(p) => ui.label(format!(
                "{} ({}/{}): point {}, w = {:.4} mm, F = {:.3} kN, {} damaged elements",
                spec.specimen.label(),
                i + 1,
                info.specimens.len(),
                s.points.len(),
                p.displacement_mm,
                p.load_n / 1000.0,
                p.damaged_elements
            )),
            None => ui.label(format!(
                "{} ({}/{}): starting",
                spec.specimen.label(),
                i + 1,
                info.specimens.len()
            )),
        };
    }
    // Which trabecular factor the states use, and why.
    let states: Vec<_> = info
        .specimens
        .iter()
        .filter(|s| matches!(s.specimen, Specimen::State(_)))
        .collect();
    if states.is_empty() {
        return;
    }
    let (text, colour) = if info.coupled {
        ("Trabecular stiffness coupled to the multiscale run", OK)
    } else {
        ("Trabecular stiffness not coupled (factor 1)", WARN)
    };
    ui.label(RichText::new(text).small().strong().color(colour));
    let mut sources: Vec<&str> = states
        .iter()
        .map(|s| s.microstructure.source.as_str())
        .collect();
    sources.dedup();
    for source in sources {
        ui.add(egui::Label::new(RichText::new(source).small().color(WEAK)).wrap());
    }
    egui::Grid::new("fracture-states")
        .spacing([10.0, 1.0])
        .show(ui, |ui| {
            for s in &states {
                ui.label(
                    RichText::new(s.specimen.label())
                        .small()
                        .color(specimen_colour(s.specimen)),
                );
                ui.label(RichText::new(format!("day {}", s.day)).small());
                ui.label(
                    RichText::new(format!("trab. BMD {:+.2} %", s.bmd_trabecular_pct)).small(),
                );
                ui.label(RichText::new(format!("factor ×{:.4}", s.microstructure.value)).small());
                ui.end_row();
            }
        });
}

fn pct(value: f64, reference: f64) -> f64 {
    100.0 * (value / reference - 1.0)
}

/// The results table: one column per state, changes against pre-flight, the published values.
fn results_section(ui: &mut egui::Ui, state: &FractureState) {
    ui.label(RichText::new("Results").strong().color(ACCENT));
    let Some(info) = &state.info else {
        ui.label(RichText::new("Start a run to see the curves and the damage.").weak());
        return;
    };
    let columns: Vec<(Specimen, Option<&FractureSummary>)> = info
        .specimens
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.specimen, Specimen::State(_)))
        .map(|(i, s)| (s.specimen, state.result(i).map(|r| &r.summary)))
        .collect();
    let pre = state
        .pre_index()
        .and_then(|i| state.result(i))
        .map(|r| r.summary);
    type Pick = fn(&FractureSummary) -> f64;
    let rows: [(&str, Pick, usize, bool); 5] = [
        ("stiffness kN/mm", |s| s.stiffness_kn_per_mm, 2, true),
        ("peak load kN", |s| s.peak_load_kn, 3, true),
        ("w at peak mm", |s| s.displacement_at_peak_mm, 4, true),
        ("energy to peak J", |s| s.energy_to_peak_j, 4, true),
        ("energy to end J", |s| s.energy_to_end_j, 4, true),
    ];
    egui::Grid::new("fracture-results")
        .striped(true)
        .num_columns(columns.len() + 1)
        .spacing([10.0, 3.0])
        .show(ui, |ui| {
            ui.label("");
            for (sp, _) in &columns {
                ui.label(
                    RichText::new(sp.label())
                        .strong()
                        .color(specimen_colour(*sp)),
                );
            }
            ui.end_row();
            for (name, pick, decimals, with_change) in rows {
                ui.label(RichText::new(name).small());
                for (sp, summary) in &columns {
                    cell(ui, summary.map(pick), pre.as_ref().map(pick), decimals, {
                        with_change && *sp != Specimen::State(FlightState::Pre)
                    });
                }
                ui.end_row();
            }
            ui.label(RichText::new("increments").small());
            for (_, summary) in &columns {
                ui.label(
                    RichText::new(summary.map_or("–".into(), |s| {
                        format!("{} ({} pts)", s.increments, s.points)
                    }))
                    .small(),
                );
            }
            ui.end_row();
            // The published values (Vemparala et al. 2025) for comparison.
            let published = |sp: Specimen| match sp {
                Specimen::State(FlightState::Pre) => {
                    Some((PUBLISHED_PEAK_PRE_N, PUBLISHED_ENERGY_PRE_MJ))
                }
                Specimen::State(FlightState::Post) => {
                    Some((PUBLISHED_PEAK_POST_N, PUBLISHED_ENERGY_POST_MJ))
                }
                _ => None,
            };
            ui.label(RichText::new("published peak kN").small().color(WEAK));
            for (sp, _) in &columns {
                published_cell(
                    ui,
                    published(*sp).map(|p| (p.0 / 1e3, PUBLISHED_PEAK_PRE_N / 1e3)),
                    3,
                    *sp,
                );
            }
            ui.end_row();
            ui.label(RichText::new("published energy J").small().color(WEAK));
            for (sp, _) in &columns {
                published_cell(
                    ui,
                    published(*sp).map(|p| (p.1 / 1e3, PUBLISHED_ENERGY_PRE_MJ / 1e3)),
                    3,
                    *sp,
                );
            }
            ui.end_row();
        });
    ui.label(
        RichText::new(format!(
            "energy to peak = ∫F dw to the peak load (the published definition); energy to end \
             = ∫F dw to the point where the load has fallen to {:.0} % of the peak",
            100.0 * info.end_load_fraction
        ))
        .small()
        .color(WEAK),
    );
    // The core, if one was broken.
    for (i, s) in info.specimens.iter().enumerate() {
        if s.specimen != Specimen::Core {
            continue;
        }
        ui.add_space(4.0);
        ui.label(
            RichText::new(format!("Trabecular core: {}", s.description))
                .small()
                .color(specimen_colour(Specimen::Core)),
        );
        match state.result(i) {
            Some(r) => {
                let a = r.apparent;
                ui.label(
                    RichText::new(format!(
                        "peak {:.1} N at {:.4} mm · apparent strength {} · strain at peak {} · \
                         modulus {}",
                        r.summary.peak_load_kn * 1e3,
                        r.summary.displacement_at_peak_mm,
                        a.map_or("–".into(), |a| format!(
                            "{:.2} MPa",
                            a.apparent_strength_mpa
                        )),
                        a.map_or("–".into(), |a| format!(
                            "{:.2} %",
                            100.0 * a.strain_at_peak
                        )),
                        a.map_or("–".into(), |a| format!(
                            "{:.0} MPa",
                            a.apparent_modulus_mpa
                        )),
                    ))
                    .small(),
                );
                if let Some((sy, ey)) =
                    a.and_then(|a| a.offset_yield_strength_mpa.zip(a.offset_yield_strain))
                {
                    ui.label(
                        RichText::new(format!(
                            "0.2 % offset yield {sy:.2} MPa at {:.2} % strain",
                            100.0 * ey
                        ))
                        .small(),
                    );
                }
            }
            None => {
                ui.label(RichText::new("not broken yet").small().weak());
            }
        }
    }
}

fn cell(ui: &mut egui::Ui, value: Option<f64>, pre: Option<f64>, decimals: usize, change: bool) {
    let Some(v) = value else {
        ui.label(RichText::new("–").weak());
        return;
    };
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 3.0;
        ui.label(RichText::new(format!("{v:.decimals$}")).monospace());
        if change && let Some(p) = pre.filter(|p| *p != 0.0) {
            ui.label(
                RichText::new(format!("{:+.1} %", pct(v, p)))
                    .small()
                    .color(WEAK),
            );
        }
    });
}

fn published_cell(ui: &mut egui::Ui, value: Option<(f64, f64)>, decimals: usize, sp: Specimen) {
    match value {
        Some((v, pre)) => {
            ui.horizontal(|ui| {
                ui.spacing_mut().item_spacing.x = 3.0;
                ui.label(
                    RichText::new(format!("{v:.decimals$}"))
                        .monospace()
                        .color(WEAK),
                );
                if sp != Specimen::State(FlightState::Pre) {
                    ui.label(
                        RichText::new(format!("{:+.1} %", pct(v, pre)))
                            .small()
                            .color(WEAK),
                    );
                }
            });
        }
        None => {
            ui.label(RichText::new("–").weak());
        }
    }
}

/// The bottom panel: which specimen's damage to draw and at which curve point, then the
/// curves.
pub fn fracture_timeline_ui(ui: &mut egui::Ui, state: &mut FractureState) {
    // Fill the panel, so that it keeps its height while it has little to show.
    ui.set_min_height(ui.available_height());
    let Some(info) = state.info.clone() else {
        ui.add_space(8.0);
        ui.label(
            RichText::new(match &state.status {
                FractureStatus::Preparing(m) => format!("Preparing: {m}"),
                s => format!(
                    "Load–displacement curves appear here once the run starts ({}).",
                    s.label()
                ),
            })
            .color(WEAK),
        );
        return;
    };
    ui.horizontal(|ui| {
        ui.label(RichText::new("damage of").strong());
        for (i, s) in info.specimens.iter().enumerate() {
            let text = RichText::new(s.specimen.label()).color(specimen_colour(s.specimen));
            if ui.selectable_label(state.selected == i, text).clicked() && state.selected != i {
                state.selected = i;
                state.follow = false;
                state.point = state.result(i).map_or(0, |r| r.peak_index);
            }
        }
        ui.separator();
        let len = state
            .specimens
            .get(state.selected)
            .map_or(0, |s| s.points.len());
        if len > 0 {
            let mut p = state.point.min(len - 1);
            let slider = egui::Slider::new(&mut p, 0..=len - 1)
                .text("curve point")
                .clamping(egui::SliderClamping::Always);
            if ui.add(slider).changed() {
                state.point = p;
                state.follow = false;
            }
            if let Some(r) = state.result(state.selected) {
                let peak = r.peak_index;
                if ui.small_button("peak").clicked() {
                    state.point = peak;
                    state.follow = false;
                }
                if ui.small_button("end").clicked() {
                    state.point = len - 1;
                    state.follow = false;
                }
            }
            ui.checkbox(&mut state.follow, "follow");
        }
    });
    let has_core = info.specimens.iter().any(|s| s.specimen == Specimen::Core);
    let height = ui.available_height().max(80.0);
    if has_core {
        ui.columns(2, |cols| {
            curves_plot(&mut cols[0], state, false, height);
            curves_plot(&mut cols[1], state, true, height);
        });
    } else {
        curves_plot(ui, state, false, height);
    }
}

/// Load–displacement curves: the vertebra states (kN), or the core (N).
fn curves_plot(ui: &mut egui::Ui, state: &FractureState, core: bool, height: f32) {
    let Some(info) = &state.info else {
        return;
    };
    let scale = if core { 1.0 } else { 1e-3 };
    let unit = if core { "N" } else { "kN" };
    let mut y_max: f64 = 0.0;
    let mut x_max: f64 = 0.0;
    Plot::new(if core {
        "fracture-core-curve"
    } else {
        "fracture-curves"
    })
    .height(height)
    .legend(Legend::default().position(egui_plot::Corner::LeftTop))
    .x_axis_label("plate displacement (mm)")
    .y_axis_label(format!("load ({unit})"))
    .include_x(0.0)
    .include_y(0.0)
    .allow_drag(false)
    .allow_zoom(false)
    .allow_scroll(false)
    .allow_boxed_zoom(false)
    .show(ui, |plot| {
        for (i, s) in info.specimens.iter().enumerate() {
            if (s.specimen == Specimen::Core) != core {
                continue;
            }
            let Some(sp) = state.specimens.get(i) else {
                continue;
            };
            let colour = specimen_colour(s.specimen);
            let pts: Vec<[f64; 2]> = std::iter::once([0.0, 0.0])
                .chain(
                    sp.points
                        .iter()
                        .map(|p| [p.displacement_mm, p.load_n * scale]),
                )
                .collect();
            for p in &pts {
                x_max = x_max.max(p[0]);
                y_max = y_max.max(p[1]);
            }
            plot.line(
                Line::new(s.specimen.label(), PlotPoints::from(pts))
                    .color(colour)
                    .width(2.0),
            );
            if let Some(r) = &sp.result {
                let peak = [
                    r.summary.displacement_at_peak_mm,
                    r.summary.peak_load_kn * 1e3 * scale,
                ];
                plot.points(
                    // Unnamed: the peak markers stay out of the legend.
                    Points::new("", vec![peak])
                        .color(colour)
                        .shape(MarkerShape::Diamond)
                        .filled(true)
                        .radius(6.0),
                );
            }
            if i == state.selected
                && let Some(p) = sp.points.get(state.point)
            {
                plot.vline(
                    VLine::new("", p.displacement_mm)
                        .color(colour.gamma_multiply(0.8))
                        .style(LineStyle::dashed_dense())
                        .width(1.5),
                );
            }
        }
        if !core {
            let pre = specimen_colour(Specimen::State(FlightState::Pre));
            let post = specimen_colour(Specimen::State(FlightState::Post));
            plot.hline(
                HLine::new(
                    "published pre-flight peak 3.532 kN",
                    PUBLISHED_PEAK_PRE_N * scale,
                )
                .color(pre.gamma_multiply(0.6))
                .style(LineStyle::dashed_loose())
                .width(1.0),
            );
            plot.hline(
                HLine::new(
                    "published post-flight peak 3.280 kN",
                    PUBLISHED_PEAK_POST_N * scale,
                )
                .color(post.gamma_multiply(0.6))
                .style(LineStyle::dashed_loose())
                .width(1.0),
            );
        }
    });
}

/// The caption over the 3-D view in fracture mode.
pub fn fracture_overlay(
    ctx: &egui::Context,
    left: f32,
    state: &FractureState,
    view: &FractureView,
) {
    egui::Area::new("fracture-overlay".into())
        .fixed_pos(egui::pos2(left + 12.0, 10.0))
        .interactable(false)
        .show(ctx, |ui| {
            let grey = |t: String, g: u8| RichText::new(t).color(Color32::from_gray(g));
            let Some(info) = &state.info else {
                ui.label(grey("Fracture: start a run in the panel".into(), 225).strong());
                return;
            };
            let Some(spec) = info.specimens.get(state.selected) else {
                return;
            };
            let title = match spec.specimen {
                Specimen::State(_) => format!(
                    "Damage · built-in vertebra, {} (day {} of {})",
                    spec.specimen.label(),
                    spec.day,
                    info.scenario
                ),
                Specimen::Core => format!("Damage · trabecular core ({})", info.core.as_ref().map_or("", |c| c.label.as_str())),
            };
            ui.add(egui::Label::new(grey(title, 230).strong()).extend());
            let line = match (view.field_point, state.specimens.get(state.selected)) {
                (Some(p), Some(s)) if view.shown_specimen == Some(state.selected) => {
                    match s.points.get(p) {
                        Some(cp) => format!(
                            "curve point {} of {} · w = {:.4} mm · F = {:.3} kN · {} damaged elements",
                            p,
                            s.points.len(),
                            cp.displacement_mm,
                            cp.load_n / 1000.0,
                            cp.damaged_elements
                        ),
                        None => format!("curve point {p}"),
                    }
                }
                _ => "undamaged: the damage field shows once this curve is done".into(),
            };
            ui.add(egui::Label::new(grey(line, 205)).extend());
            if matches!(spec.specimen, Specimen::State(_)) {
                ui.label(
                    grey(
                        "sagittal section (clip plane of the Remodeling mode) · z = loading axis (up)"
                            .into(),
                        170,
                    )
                    .small(),
                );
            }
        });
}

/// The damage colour bar (0 → 1) at the right edge of the 3-D view.
pub fn damage_colour_bar_overlay(ctx: &egui::Context, right: f32, top: f32) {
    super::ui::colour_bar_overlay(
        ctx,
        right,
        top,
        &super::ui::ColourBar {
            id: "damage-colour-bar",
            title: "damage",
            colour: &damage_srgb,
            tick: &|t| format!("{t:.2}"),
            footnote: "1 − secant/initial modulus",
        },
    );
}
