//! The panels of the micro view's multiscale mode (issue 5 §3): in the left panel the
//! scenario, Start / Cancel, the progress (macroscale day, checkpoint, adaptation move), the
//! layout and a table of day 0, the least-bone checkpoint and the latest one (morphometry
//! after BoneJ, Doube et al. 2010; apparent modulus; Dice against day 0); at the bottom the
//! BV/TV timeline, the target from the trabecular BMD against the BV/TV reached at every
//! checkpoint, phases shaded; over the 3-D view a legend of the change colours and a label
//! above each structure.
//!
//! The panels only edit [`MultiscaleState`] and send runner commands through it.

use bevy::math::Vec2;
use bevy_egui::egui::{self, Color32, RichText};
use egui_plot::{HLine, Line, LineStyle, MarkerShape, Plot, PlotPoints, Points, VLine};

use osteolab::multiscale::Checkpoint;
use osteolab::remodel::scenario::Scenario;
use osteolab::runner::MicroSlot;

use super::bridge::{Sim, UiState};
use super::multiscale::{Layout, MicroMode, MsStatus, MultiscaleState};
use super::multiscale_scene::{BONE_SRGB, FORMED_SRGB, MultiscaleView, REMOVED_SRGB, Role, Shown};
use super::scene::{RenderQuality, SceneState};

const ACCENT: Color32 = Color32::from_rgb(120, 190, 255);
const WARN: Color32 = Color32::from_rgb(255, 120, 110);
/// The target line of the timeline.
const TARGET: Color32 = Color32::from_rgb(240, 150, 60);
/// The reached BV/TV of the timeline.
const REACHED: Color32 = Color32::from_rgb(120, 210, 255);
/// Width of each value column of the table.
const VALUE_COLUMN: f32 = 78.0;
/// Height of the timeline panel, logical pixels.
pub const MULTISCALE_TIMELINE_HEIGHT: f32 = 230.0;

fn colour32(c: [f32; 3]) -> Color32 {
    Color32::from_rgb(
        (c[0] * 255.0).round() as u8,
        (c[1] * 255.0).round() as u8,
        (c[2] * 255.0).round() as u8,
    )
}

/// The micro view's mode switch (top of its panel).
pub fn mode_switch_ui(ui: &mut egui::Ui, state: &mut MultiscaleState) {
    ui.horizontal(|ui| {
        ui.selectable_value(&mut state.mode, MicroMode::Compare, "Real vs ReconGAN");
        ui.selectable_value(&mut state.mode, MicroMode::Multiscale, "Multiscale run");
        if state.is_computing() && state.mode == MicroMode::Compare {
            ui.spinner();
        }
    });
    ui.separator();
}

/// The structure a new run starts from: the real one when loaded, else the generated one.
pub fn original_slot(ui_state: &UiState) -> Option<MicroSlot> {
    [MicroSlot::Real, MicroSlot::Generated]
        .into_iter()
        .find(|&s| ui_state.slots.get(s).model.is_some())
}

/// Starts a run with the panel's settings on the structure of [`original_slot`].
pub fn start_run(
    sim: &Sim,
    state: &mut MultiscaleState,
    ui_state: &UiState,
    quality: &RenderQuality,
) -> bool {
    let Some(slot) = original_slot(ui_state) else {
        state.message = Some("no structure yet: load the micro-CT sample or generate one".into());
        return false;
    };
    let software = !matches!(quality, RenderQuality::Gpu { .. });
    state.start(sim, slot, MultiscaleState::triangle_budget(software));
    true
}

/// The left panel in the multiscale mode.
pub fn multiscale_panel_ui(
    ui: &mut egui::Ui,
    sim: Option<&Sim>,
    state: &mut MultiscaleState,
    ui_state: &UiState,
    scene: &SceneState,
) {
    ui.label(
        RichText::new(
            "at every checkpoint, the vertebra's trabecular BMD change sets a BV/TV target and the structure is adapted to it (SED-driven level set)",
        )
        .weak(),
    );
    ui.add_space(4.0);
    setup_section(ui, sim, state, ui_state, scene);
    ui.separator();
    progress_section(ui, state);
    ui.separator();
    ui.horizontal(|ui| {
        ui.label("show");
        ui.radio_value(&mut state.layout, Layout::SideBySide, "side by side");
        ui.radio_value(&mut state.layout, Layout::Latest, "latest only");
    });
    ui.separator();
    table_section(ui, state);
}

fn setup_section(
    ui: &mut egui::Ui,
    sim: Option<&Sim>,
    state: &mut MultiscaleState,
    ui_state: &UiState,
    scene: &SceneState,
) {
    ui.label(RichText::new("Run").strong().color(ACCENT));
    let slot = original_slot(ui_state);
    let running = state.is_computing();
    match (&state.info, slot) {
        (Some(info), _) if running || state.status == MsStatus::Finished => {
            ui.add(
                egui::Label::new(RichText::new(format!("structure: {}", info.structure)).small())
                    .wrap(),
            );
        }
        (_, Some(slot)) => {
            let label = ui_state
                .slots
                .get(slot)
                .model
                .as_ref()
                .map(|m| m.label.clone())
                .unwrap_or_default();
            ui.add(
                egui::Label::new(
                    RichText::new(format!("structure ({} slot): {label}", slot.label())).small(),
                )
                .wrap(),
            );
        }
        (_, None) => {
            ui.label(RichText::new("waiting for a structure (real or generated)…").weak());
        }
    }
    ui.add_enabled_ui(!running, |ui| {
        ui.horizontal(|ui| {
            ui.label("scenario");
            egui::ComboBox::from_id_salt("ms-scenario")
                .selected_text(&state.scenario_name)
                .show_ui(ui, |ui| {
                    for name in Scenario::builtin_names() {
                        ui.selectable_value(&mut state.scenario_name, (*name).to_string(), *name);
                    }
                });
        });
        ui.horizontal(|ui| {
            ui.label("checkpoint every");
            ui.add(
                egui::DragValue::new(&mut state.checkpoint_every_days)
                    .range(1..=365)
                    .suffix(" days"),
            );
            ui.label(RichText::new("+ phase ends").small().weak());
        });
    });
    if let Some(s) = Scenario::builtin(&state.scenario_name) {
        let phases: Vec<String> = s
            .phases
            .iter()
            .map(|p| format!("{} {} d", p.name, p.days))
            .collect();
        // (egui's default fonts have no arrows.)
        let every = state.checkpoint_every_days.max(1);
        let n = osteolab::multiscale::checkpoint_days(&s, every).len();
        ui.label(
            RichText::new(format!(
                "{} ({} days, {n} checkpoints)",
                phases.join(", "),
                s.total_days()
            ))
            .small()
            .weak(),
        );
    }
    ui.horizontal(|ui| {
        let size = egui::vec2(96.0, 24.0);
        let can_start = !running && sim.is_some() && slot.is_some();
        if ui
            .add_enabled(
                can_start,
                egui::Button::new(RichText::new("▶ Start").strong()).min_size(size),
            )
            .on_hover_text("Run the scenario on the built-in vertebra and adapt the structure at every checkpoint")
            .clicked()
            && let Some(sim) = sim
        {
            start_run(sim, state, ui_state, &scene.quality);
        }
        if ui
            .add_enabled(running, egui::Button::new("■ Cancel").min_size(size))
            .on_hover_text("Stop the run (the checkpoints computed so far stay)")
            .clicked()
            && let Some(sim) = sim
        {
            state.cancel(sim);
        }
    });
}

fn progress_section(ui: &mut egui::Ui, state: &MultiscaleState) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("Progress").strong().color(ACCENT));
        if state.is_computing() {
            ui.spinner();
        }
    });
    // On a line of its own, wrapped: set-up messages are long.
    ui.add(egui::Label::new(state.status.label()).wrap());
    if let Some(info) = &state.info {
        let day = state.latest_day();
        let done = state.checkpoints.len().saturating_sub(1);
        let fraction = day as f32 / info.total_days.max(1) as f32;
        ui.add(
            egui::ProgressBar::new(fraction)
                .desired_height(14.0)
                .text(format!(
                    "macroscale day {day} / {}{}",
                    info.total_days,
                    state
                        .phase_at(day)
                        .map(|p| format!(" · {p}"))
                        .unwrap_or_default()
                )),
        );
        ui.label(
            RichText::new(format!(
                "checkpoint {done} / {} done · mapping {} · {}",
                info.schedule.len(),
                info.mapping,
                if info.coupled {
                    "coupled remodeling"
                } else {
                    "plain adaptation"
                }
            ))
            .small(),
        );
        if let Some(a) = state.adapting {
            ui.label(
                RichText::new(format!(
                    "adapting day {}: move {}, {} FE solves, BV/TV {:.4}",
                    a.day, a.moves, a.fe_solves, a.bv_tv
                ))
                .small(),
            );
        } else if state.is_computing()
            && let Some(next) = info.schedule.get(done)
        {
            ui.label(
                RichText::new(format!("macroscale towards the checkpoint of day {next}")).small(),
            );
        }
        if let Some(c) = state.checkpoints.last() {
            ui.label(
                RichText::new(format!(
                    "last checkpoint: day {}, BMD {:+.2} %, BV/TV {:.4} (target {:.4}), {} FE solves, {:.1} s",
                    c.day, c.bmd_trabecular_pct, c.bv_tv, c.target_bv_tv, c.fe_solves, c.seconds
                ))
                .small(),
            );
        }
    }
    if let Some(m) = &state.message {
        let colour = if state.status == MsStatus::Failed {
            WARN
        } else {
            Color32::from_gray(190)
        };
        ui.add(egui::Label::new(RichText::new(m).color(colour).small()).wrap());
    }
}

/// A small legend of the change colours.
pub fn legend_ui(ui: &mut egui::Ui) {
    ui.horizontal_wrapped(|ui| {
        for (colour, text) in [
            (BONE_SRGB, "unchanged bone"),
            (FORMED_SRGB, "formed since day 0"),
            (REMOVED_SRGB, "resorbed since day 0 (shell)"),
        ] {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
            ui.painter().rect_filled(rect, 2.0, colour32(colour));
            ui.label(RichText::new(text).small());
            ui.add_space(4.0);
        }
    });
}

/// Day 0, the least-bone checkpoint and the latest one.
fn three(state: &MultiscaleState) -> [Option<&Checkpoint>; 3] {
    let first = state.checkpoints.first();
    let lowest = state
        .checkpoints
        .iter()
        .reduce(|a, b| if b.bv_tv < a.bv_tv { b } else { a });
    [first, lowest, state.checkpoints.last()]
}

/// One table cell: numbers in monospace, words (the phase) in the proportional font.
fn cell(ui: &mut egui::Ui, text: Option<String>) {
    let text = text.unwrap_or_else(|| "–".into());
    let numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || "+-.–/".contains(c));
    let rich = if numeric {
        RichText::new(text).monospace()
    } else {
        RichText::new(text)
    };
    ui.add_sized([VALUE_COLUMN, 16.0], egui::Label::new(rich));
}

fn table_section(ui: &mut egui::Ui, state: &MultiscaleState) {
    ui.label(RichText::new("Structures").strong().color(ACCENT));
    let cols = three(state);
    type Row = (&'static str, fn(&Checkpoint) -> String);
    let rows: [Row; 14] = [
        ("day", |c| format!("{}", c.day)),
        ("phase", |c| c.phase.clone()),
        ("BMD trab. %", |c| format!("{:+.2}", c.bmd_trabecular_pct)),
        ("target BV/TV", |c| format!("{:.4}", c.target_bv_tv)),
        ("BV/TV", |c| format!("{:.4}", c.bv_tv)),
        ("Tb.Th mm", |c| format!("{:.3}", c.morphometry.tb_th_mm)),
        ("Tb.Sp mm", |c| format!("{:.3}", c.morphometry.tb_sp_mm)),
        ("Tb.N 1/mm", |c| format!("{:.2}", c.morphometry.tb_n_per_mm)),
        ("Conn.D 1/mm³", |c| {
            format!("{:.1}", c.morphometry.conn_d_per_mm3)
        }),
        ("SMI", |c| format!("{:.2}", c.morphometry.smi)),
        ("DA", |c| format!("{:.3}", c.morphometry.da)),
        ("E_app MPa", |c| format!("{:.0}", c.e_app_mpa)),
        ("Dice vs day 0", |c| format!("{:.3}", c.dice_vs_original)),
        ("resorbed/formed", |c| {
            format!("{}/{}", c.removed_voxels, c.added_voxels)
        }),
    ];
    egui::Grid::new("ms-table")
        .num_columns(4)
        .striped(true)
        .spacing([4.0, 2.0])
        .show(ui, |ui| {
            ui.label("");
            for (title, hover) in [
                ("Day 0", "the original structure (pre-flight)"),
                (
                    "Least bone",
                    "the checkpoint with the least bone: the end of the flight once the recovery has begun",
                ),
                ("Latest", "the latest checkpoint (recovered at the end of a recovery scenario)"),
            ] {
                ui.add_sized(
                    [VALUE_COLUMN, 16.0],
                    egui::Label::new(RichText::new(title).strong()),
                )
                .on_hover_text(hover);
            }
            ui.end_row();
            for (name, value) in rows {
                ui.label(RichText::new(name).small());
                for c in cols {
                    cell(ui, c.map(value));
                }
                ui.end_row();
            }
        });
    ui.label(
        RichText::new(
            "E_app: axial-free compression of the structure (shape optimisation load case)",
        )
        .small()
        .weak(),
    );
}

/// The BV/TV timeline (bottom panel of the multiscale mode).
pub fn multiscale_timeline_ui(ui: &mut egui::Ui, state: &MultiscaleState) {
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.label(RichText::new("BV/TV over days:").small().weak());
        legend_line(
            ui,
            TARGET,
            LegendGlyph::Line,
            "target from the trabecular BMD change",
        );
        legend_line(ui, REACHED, LegendGlyph::Dots, "reached at each checkpoint");
        legend_line(ui, Color32::from_gray(150), LegendGlyph::Dashed, "day 0");
        if let Some(c) = state.checkpoints.last() {
            ui.label(
                RichText::new(format!(
                    "· day {}: BV/TV {:.4} ({:+.2} % vs day 0), Dice {:.3}",
                    c.day, c.bv_tv, c.bv_tv_change_pct, c.dice_vs_original
                ))
                .small()
                .monospace(),
            );
        }
    });
    let Some(info) = &state.info else {
        ui.label(RichText::new("start a run to see its BV/TV timeline").weak());
        // Keep the panel's height (a resizable panel remembers the size of its content).
        ui.allocate_space(ui.available_size());
        return;
    };
    let bv0 = info.original.bv_tv;
    let mut target: Vec<[f64; 2]> = vec![[0.0, bv0]];
    target.extend(state.days.iter().map(|d| [d.day as f64, d.target_bv_tv]));
    let reached: Vec<[f64; 2]> = state
        .checkpoints
        .iter()
        .map(|c| [c.day as f64, c.bv_tv])
        .collect();
    let lo = target
        .iter()
        .chain(&reached)
        .map(|p| p[1])
        .fold(bv0, f64::min);
    let hi = target
        .iter()
        .chain(&reached)
        .map(|p| p[1])
        .fold(bv0, f64::max);
    let margin = (0.1 * (hi - lo)).max(0.002);
    let height = ui.available_height().max(80.0);
    Plot::new("ms-bvtv-timeline")
        .height(height)
        .x_axis_label("day")
        .y_axis_label("BV/TV")
        .include_x(0.0)
        .include_x(info.total_days as f64)
        .include_y(lo - margin)
        .include_y(hi + margin)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .show(ui, |plot| {
            super::timeline::shade_phases(
                plot,
                &info.phase_starts,
                &info.phase_names,
                info.total_days,
            );
            plot.hline(
                HLine::new("day 0", bv0)
                    .color(Color32::from_gray(150))
                    .style(LineStyle::dashed_loose())
                    .width(1.0),
            );
            plot.line(
                Line::new("target", PlotPoints::from(target))
                    .color(TARGET)
                    .width(3.0),
            );
            plot.line(
                Line::new("reached", PlotPoints::from(reached.clone()))
                    .color(REACHED)
                    .width(1.2),
            );
            plot.points(
                Points::new("reached", PlotPoints::from(reached))
                    .color(REACHED)
                    .shape(MarkerShape::Circle)
                    .filled(true)
                    .radius(3.5),
            );
            if state.is_computing() {
                plot.vline(
                    VLine::new("macroscale day", state.latest_day() as f64)
                        .color(Color32::from_rgb(255, 210, 120))
                        .width(1.0),
                );
            }
        });
}

/// The glyph of a legend entry.
#[derive(Clone, Copy)]
enum LegendGlyph {
    Line,
    Dots,
    Dashed,
}

/// A legend entry of the timeline: a short painted line (egui's default fonts lack the
/// box-drawing and bullet characters) and its text.
fn legend_line(ui: &mut egui::Ui, colour: Color32, glyph: LegendGlyph, text: &str) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(24.0, 12.0), egui::Sense::hover());
    let y = rect.center().y;
    let painter = ui.painter();
    match glyph {
        LegendGlyph::Line => {
            painter.line_segment(
                [egui::pos2(rect.left(), y), egui::pos2(rect.right(), y)],
                egui::Stroke::new(3.0, colour),
            );
        }
        LegendGlyph::Dots => {
            painter.line_segment(
                [egui::pos2(rect.left(), y), egui::pos2(rect.right(), y)],
                egui::Stroke::new(1.2, colour),
            );
            for x in [rect.left() + 4.0, rect.right() - 4.0] {
                painter.circle_filled(egui::pos2(x, y), 3.0, colour);
            }
        }
        LegendGlyph::Dashed => {
            for k in 0..3 {
                let x = rect.left() + 9.0 * k as f32;
                painter.line_segment(
                    [egui::pos2(x, y), egui::pos2(x + 5.0, y)],
                    egui::Stroke::new(1.0, colour),
                );
            }
        }
    }
    ui.label(RichText::new(text).color(colour).small());
    ui.add_space(6.0);
}

/// The label above a displayed structure.
fn structure_title(shown: &Shown, state: &MultiscaleState) -> String {
    let c = &shown.checkpoint;
    // A checkpoint on the last day of a phase (the first day of the next is its start).
    let phase_end = state
        .info
        .as_ref()
        .is_some_and(|i| i.phase_starts.contains(&c.day) && c.day > 0);
    let what = match shown.role {
        Role::Original => "day 0 · pre-flight".to_string(),
        Role::Lowest if phase_end => format!("day {} · end of {}", c.day, c.phase),
        Role::Lowest => format!("day {} · least bone", c.day),
        Role::Latest => {
            let ended = matches!(state.status, MsStatus::Finished);
            match (shown.also_lowest, ended) {
                (true, _) => format!("day {} · {} · least bone so far", c.day, c.phase),
                (false, true) => format!("day {} · end of run", c.day),
                (false, false) => format!("day {} · {} · latest", c.day, c.phase),
            }
        }
    };
    format!(
        "{what}\nBV/TV {:.3} ({:+.1} %)\nE_app {:.0} MPa · Dice {:.2}",
        c.bv_tv, c.bv_tv_change_pct, c.e_app_mpa, c.dice_vs_original
    )
}

/// Over the 3-D view: what is shown, the colour legend, and a label above each structure
/// (`anchors`: their projected positions, logical pixels, in the order of `view.shown`).
pub fn multiscale_overlay(
    ctx: &egui::Context,
    panel_width: f32,
    state: &MultiscaleState,
    view: &MultiscaleView,
    anchors: &[Option<Vec2>],
) {
    egui::Area::new("ms-overlay".into())
        .fixed_pos(egui::pos2(panel_width + 12.0, 10.0))
        .interactable(false)
        .show(ctx, |ui| {
            let text = match &state.info {
                Some(info) => format!(
                    "multiscale run · {} · {}",
                    info.scenario.name, info.structure
                ),
                None => "multiscale run: press Start (the structure is the real one when loaded, else the generated one)".into(),
            };
            ui.add(egui::Label::new(RichText::new(text).color(Color32::from_gray(225))).extend());
            legend_ui(ui);
            if !view.shown.is_empty() {
                let tris: Vec<String> = view
                    .shown
                    .iter()
                    .map(|s| {
                        format!(
                            "{} + {} (step {})",
                            s.bone_triangles, s.removed_triangles, s.mesh_step
                        )
                    })
                    .collect();
                ui.label(
                    RichText::new(format!(
                        "triangles (bone + resorbed) {}, z = loading axis (up)",
                        tris.join(", ")
                    ))
                    .small()
                    .color(Color32::from_gray(150)),
                );
                ui.label(
                    RichText::new("left-drag: orbit · right/middle-drag: pan · wheel: zoom")
                        .small()
                        .color(Color32::from_gray(150)),
                );
            }
        });
    for (i, shown) in view.shown.iter().enumerate() {
        let Some(Some(at)) = anchors.get(i) else {
            continue;
        };
        let text = structure_title(shown, state);
        super::ui::floating_label(ctx, egui::Id::new(("ms-label", i)), *at, text);
    }
}
