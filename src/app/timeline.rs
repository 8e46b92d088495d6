//! The timeline panel of the vertebra view (bottom of the window): run controls, the
//! displayed day (scrub slider over the computed days), and the plot of trabecular,
//! cortical, endplate and whole-body BMD change with the scenario's phases as bands and a
//! vertical line at the displayed day. Clicking or dragging in the plot scrubs too.

use bevy_egui::egui::{self, Color32, RichText};
use egui_plot::{GridInput, Line, Plot, PlotPoints, PlotUi, Span, VLine, uniform_grid_spacer};

use osteolab::remodel::simulation::DayRecord;

use super::bridge::Sim;
use super::remodel::{RemodelState, RunStatus};
use super::vertebra::VertebraView;

/// Line colours of the plot (also used in the legend).
pub const TRABECULAR: Color32 = Color32::from_rgb(240, 150, 60);
pub const CORTICAL: Color32 = Color32::from_rgb(110, 180, 255);
pub const ENDPLATE: Color32 = Color32::from_rgb(190, 130, 230);
pub const WHOLE: Color32 = Color32::from_rgb(235, 235, 235);

/// Height of the timeline panel, logical pixels.
pub const TIMELINE_HEIGHT: f32 = 270.0;

const WARN: Color32 = Color32::from_rgb(255, 120, 110);

/// The timeline panel contents.
pub fn timeline_ui(
    ui: &mut egui::Ui,
    sim: Option<&Sim>,
    state: &mut RemodelState,
    view: &VertebraView,
) {
    ui.add_space(4.0);
    controls_row(ui, sim, state, view);
    ui.add_space(2.0);
    scrub_row(ui, state);
    ui.add_space(2.0);
    if let Some(day) = plot(ui, state) {
        state.shown_day = day;
        state.follow_latest = day >= state.latest_day() && state.is_computing();
        state.replay = None;
    }
}

fn controls_row(
    ui: &mut egui::Ui,
    sim: Option<&Sim>,
    state: &mut RemodelState,
    view: &VertebraView,
) {
    ui.horizontal(|ui| {
        let Some(sim) = sim else {
            ui.spinner();
            ui.label("starting the simulation thread…");
            return;
        };
        let latest = state.latest_day();
        let size = egui::vec2(92.0, 24.0);
        match &state.status {
            RunStatus::Running | RunStatus::Preparing(_) => {
                if ui
                    .add_sized(size, egui::Button::new("⏸ Pause"))
                    .on_hover_text("Pause the run at the next day")
                    .clicked()
                {
                    state.pause(sim);
                }
            }
            RunStatus::Paused => {
                if ui
                    .add_sized(size, egui::Button::new(RichText::new("⏵ Play").strong()))
                    .on_hover_text("Continue the run to the end of the scenario")
                    .clicked()
                {
                    state.resume(sim);
                }
            }
            _ => {
                if state.replay.is_some() {
                    if ui.add_sized(size, egui::Button::new("⏸ Pause")).clicked() {
                        state.replay = None;
                    }
                } else if ui
                    .add_enabled(latest > 0, egui::Button::new("⏵ Replay").min_size(size))
                    .on_hover_text("Play the computed days again")
                    .clicked()
                {
                    let from = if state.shown_day >= latest {
                        0
                    } else {
                        state.shown_day
                    };
                    state.follow_latest = false;
                    state.replay = Some(from as f32);
                    state.shown_day = from;
                }
            }
        }
        let can_compute_step = state.status == RunStatus::Paused && state.shown_day >= latest;
        let can_show_next = state.shown_day < latest;
        if ui
            .add_enabled(
                can_compute_step || can_show_next,
                egui::Button::new("+1 day").min_size(egui::vec2(64.0, 24.0)),
            )
            .on_hover_text("Show the next day (computing it when paused at the newest day)")
            .clicked()
        {
            if can_show_next {
                state.shown_day += 1;
                state.follow_latest = false;
                state.replay = None;
            } else {
                state.step(sim, 1);
            }
        }
        let live = matches!(
            state.status,
            RunStatus::Running | RunStatus::Paused | RunStatus::Preparing(_)
        );
        if ui
            .add_enabled(
                live,
                egui::Button::new("■ Stop").min_size(egui::vec2(64.0, 24.0)),
            )
            .on_hover_text("Cancel the run (the computed days stay viewable)")
            .clicked()
        {
            state.cancel(sim);
        }
        ui.separator();
        let total = state.info.as_ref().map_or(0, |i| i.total_days);
        let day = state.shown_day;
        let phase = state.phase_label(day);
        ui.label(
            RichText::new(format!("day {day} / {total}"))
                .strong()
                .monospace(),
        );
        if !phase.is_empty() {
            ui.label(RichText::new(phase).color(Color32::from_rgb(255, 210, 120)));
        }
        if let Some(field_day) = view.field_day
            && field_day != day
        {
            ui.label(
                RichText::new(format!("(field of day {field_day})"))
                    .small()
                    .weak(),
            );
        }
        ui.separator();
        ui.checkbox(&mut state.follow_latest, "follow")
            .on_hover_text("Show each day as it is computed");
        ui.separator();
        match &state.status {
            RunStatus::Preparing(m) => {
                ui.spinner();
                ui.label(RichText::new(m).small());
            }
            RunStatus::Running => {
                ui.spinner();
                ui.label(format!(
                    "computing day {} · {:.0} days/s",
                    latest + 1,
                    state.stats.rate
                ));
            }
            other => {
                ui.label(other.label());
            }
        }
    });
    if let Some(m) = &state.message {
        ui.label(RichText::new(m).color(WARN).small());
    }
}

fn scrub_row(ui: &mut egui::Ui, state: &mut RemodelState) {
    let latest = state.latest_day();
    ui.horizontal(|ui| {
        ui.label("day");
        ui.spacing_mut().slider_width = (ui.available_width() - 80.0).max(100.0);
        let mut day = state.shown_day.min(latest);
        let response = ui.add_enabled(
            latest > 0,
            egui::Slider::new(&mut day, 0..=latest.max(1))
                .clamping(egui::SliderClamping::Always)
                .show_value(true),
        );
        if response.changed() {
            state.shown_day = day.min(latest);
            state.follow_latest = state.shown_day >= latest && state.is_computing();
            state.replay = None;
        }
    });
}

/// Grid steps of the % axis: 1–2–5 steps giving at least three labelled lines (egui_plot's
/// default powers of ten leave a −10 … 0 % axis with the single label "0").
fn percent_steps(input: GridInput) -> [f64; 3] {
    let span = (input.bounds.1 - input.bounds.0).abs().max(1e-9);
    let major = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        .into_iter()
        .find(|s| span / s <= 5.0)
        .unwrap_or(100.0);
    let minor = (major / 5.0).max(input.base_step_size);
    [minor, major, major * 5.0]
}

/// Series of one region as plot points.
fn series(records: &[DayRecord], pick: impl Fn(&DayRecord) -> f64) -> PlotPoints<'static> {
    records
        .iter()
        .map(|r| [r.day as f64, pick(r)])
        .collect::<Vec<_>>()
        .into()
}

/// The BMD plot; returns a day when the user clicked or dragged in it.
fn plot(ui: &mut egui::Ui, state: &RemodelState) -> Option<u32> {
    let total = state.info.as_ref().map_or(1, |i| i.total_days.max(1));
    let latest = state.latest_day();
    // A legend row of its own: egui_plot's legend would also list the phase bands.
    ui.horizontal(|ui| {
        ui.label(RichText::new("BMD change vs day 0:").small().weak());
        for (name, colour) in [
            ("whole", WHOLE),
            ("trabecular", TRABECULAR),
            ("cortical", CORTICAL),
            ("endplate", ENDPLATE),
        ] {
            ui.label(RichText::new(format!("— {name}")).color(colour).small());
        }
        ui.label(
            RichText::new("| displayed day")
                .color(Color32::from_rgb(255, 210, 120))
                .small(),
        );
        if let Some(r) = state.series.get(state.shown_day as usize) {
            ui.label(
                RichText::new(format!(
                    "· day {}: trabecular {:+.2} %, cortical {:+.2} %, endplate {:+.2} %, whole {:+.2} %",
                    r.day,
                    r.bmd_trabecular_pct,
                    r.bmd_cortical_pct,
                    r.bmd_endplate_pct,
                    r.bmd_whole_pct
                ))
                .small()
                .monospace(),
            );
        }
    });
    let height = ui.available_height().max(80.0);
    let response = Plot::new("bmd-timeline")
        .height(height)
        .x_axis_label("day")
        .y_axis_label("BMD change (%)")
        .y_grid_spacer(uniform_grid_spacer(percent_steps))
        .include_x(0.0)
        .include_x(total as f64)
        .include_y(0.0)
        .include_y(-2.0)
        .include_y(1.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .show(ui, |plot| {
            if let Some(info) = &state.info {
                shade_phases(plot, &info.phase_starts, &info.phase_names, info.total_days);
            }
            let records = &state.series;
            plot.line(
                Line::new("trabecular", series(records, |r| r.bmd_trabecular_pct))
                    .color(TRABECULAR)
                    .width(1.8),
            );
            plot.line(
                Line::new("cortical", series(records, |r| r.bmd_cortical_pct))
                    .color(CORTICAL)
                    .width(1.8),
            );
            plot.line(
                Line::new("endplate", series(records, |r| r.bmd_endplate_pct))
                    .color(ENDPLATE)
                    .width(1.4),
            );
            plot.line(
                Line::new("whole", series(records, |r| r.bmd_whole_pct))
                    .color(WHOLE)
                    .width(2.4),
            );
            plot.vline(
                VLine::new("shown day", state.shown_day as f64)
                    .color(Color32::from_rgb(255, 210, 120))
                    .width(1.5),
            );
            let r = plot.response();
            if (r.clicked() || r.dragged()) && latest > 0 {
                plot.pointer_coordinate()
                    .map(|p| p.x.round().clamp(0.0, latest as f64) as u32)
            } else {
                None
            }
        });
    response.inner
}

/// Shades the phases of a scenario (phase `i` runs from `phase_starts[i]` to the next start, or
/// to `total_days`) as alternating named bands on a plot whose x axis is days.
pub(super) fn shade_phases(
    plot: &mut PlotUi,
    phase_starts: &[u32],
    phase_names: &[String],
    total_days: u32,
) {
    for (i, (start, name)) in phase_starts.iter().zip(phase_names).enumerate() {
        let end = phase_starts.get(i + 1).copied().unwrap_or(total_days);
        let fill = if i % 2 == 0 {
            Color32::from_rgba_unmultiplied(120, 140, 170, 26)
        } else {
            Color32::from_rgba_unmultiplied(255, 200, 110, 30)
        };
        plot.span(
            Span::new(name.clone(), *start as f64..=end as f64)
                .fill(fill)
                .border_width(0.0),
        );
    }
}
