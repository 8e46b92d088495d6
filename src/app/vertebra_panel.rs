//! The side panel of the vertebra view: the model, the section and colour range, the
//! scenario editor (built-ins, phases, TOML load / save, apply from the next day or
//! restart), and the vertebra parameters (built-in or CT) that rebuild and restart. Also
//! the overlays drawn over the 3-D view: the caption and the colour bar.

use bevy_egui::egui::{self, Color32, RichText};

use osteolab::remodel::scenario::{MAX_LOAD_SCALE, MAX_PTH_SCALE, Phase, Scenario};
use osteolab::remodel::vertebra::{Region, VertebraParams};
use osteolab::runner::VertebraSource;

use super::bridge::Sim;
use super::colormap::{DivergingScale, cool_warm_srgb};
use super::remodel::{
    ApplyMode, DEFAULT_RANGE_PCT, DialogPurpose, RemodelState, RunStatus, open_dialog,
};
use super::vertebra::VertebraView;

const ACCENT: Color32 = Color32::from_rgb(120, 190, 255);
const WARN: Color32 = Color32::from_rgb(255, 120, 110);
const OK: Color32 = Color32::from_rgb(140, 210, 140);

/// The panel contents of the vertebra view.
pub fn vertebra_panel(
    ui: &mut egui::Ui,
    sim: Option<&Sim>,
    state: &mut RemodelState,
    view: &VertebraView,
) {
    model_section(ui, state, view);
    ui.separator();
    section_and_colour(ui, state);
    ui.separator();
    scenario_section(ui, sim, state);
    ui.separator();
    vertebra_section(ui, sim, state);
}

fn model_section(ui: &mut egui::Ui, state: &RemodelState, view: &VertebraView) {
    ui.label(RichText::new("Vertebra").strong().color(ACCENT));
    let builtin = matches!(state.source, VertebraSource::Builtin(_));
    ui.horizontal_wrapped(|ui| {
        if builtin {
            ui.label(
                RichText::new(" BUILT-IN ")
                    .small()
                    .strong()
                    .background_color(Color32::from_rgb(150, 95, 20))
                    .color(Color32::WHITE),
            );
        }
        ui.label(RichText::new(state.source.label()).strong());
    });
    if let Some(info) = &state.info {
        let d = info.grid.dims;
        ui.label(format!(
            "{} elements of {:.1} mm on {}×{}×{}",
            info.element_count, info.grid.voxel_size_mm[0], d.nx, d.ny, d.nz
        ));
        ui.label(
            RichText::new(format!(
                "trabecular {} · cortical {} · endplate {}",
                info.region_count(Region::Trabecular),
                info.region_count(Region::Cortical),
                info.region_count(Region::Endplate)
            ))
            .small(),
        );
        ui.label(
            RichText::new(format!(
                "{} triangles ({} in the cap), set up in {:.1} s",
                view.triangles, view.cap_triangles, info.setup_seconds
            ))
            .small()
            .weak(),
        );
    } else {
        ui.horizontal(|ui| {
            if state.is_computing() {
                ui.spinner();
            }
            ui.label(RichText::new(state.status.label()).weak());
        });
    }
}

fn section_and_colour(ui: &mut egui::Ui, state: &mut RemodelState) {
    ui.label(RichText::new("Section and colours").strong().color(ACCENT));
    let range = state
        .info
        .as_ref()
        .map(|i| i.geometry.x_range_mm())
        .unwrap_or((-25.0, 25.0));
    ui.horizontal(|ui| {
        ui.checkbox(&mut state.clip_enabled, "sagittal clip at x =");
        let mut x = state.clip_x_mm.unwrap_or(0.5 * (range.0 + range.1));
        let slider = egui::Slider::new(&mut x, range.0..=range.1)
            .suffix(" mm")
            .fixed_decimals(1);
        if ui.add_enabled(state.clip_enabled, slider).changed() {
            state.clip_x_mm = Some(x);
        }
    });
    ui.horizontal(|ui| {
        ui.add_enabled_ui(state.clip_enabled, |ui| {
            if ui.button("mid-plane").clicked() {
                state.clip_x_mm = Some(0.5 * (range.0 + range.1));
            }
            ui.radio_value(&mut state.keep_below, true, "keep left (−x)");
            ui.radio_value(&mut state.keep_below, false, "keep right");
        });
    });
    ui.label(
        RichText::new("Shift + left-drag in the view also moves the plane")
            .small()
            .weak(),
    );
    ui.horizontal(|ui| {
        ui.label("colour range");
        ui.add(
            egui::DragValue::new(&mut state.range_min_pct)
                .range(-100.0..=-0.1)
                .speed(0.1)
                .suffix(" %"),
        );
        ui.label("…");
        ui.add(
            egui::DragValue::new(&mut state.range_max_pct)
                .range(0.1..=100.0)
                .speed(0.1)
                .prefix("+")
                .suffix(" %"),
        );
        if ui.small_button("reset").clicked() {
            (state.range_min_pct, state.range_max_pct) = DEFAULT_RANGE_PCT;
        }
    });
}

fn scenario_section(ui: &mut egui::Ui, sim: Option<&Sim>, state: &mut RemodelState) {
    ui.label(RichText::new("Scenario").strong().color(ACCENT));
    ui.horizontal(|ui| {
        ui.label("built-in");
        let selected = if state.builtin_choice.is_empty() {
            "(edited / file)".to_string()
        } else {
            state.builtin_choice.clone()
        };
        let mut picked = None;
        egui::ComboBox::from_id_salt("builtin-scenario")
            .selected_text(selected)
            .show_ui(ui, |ui| {
                for name in Scenario::builtin_names() {
                    if ui
                        .selectable_label(state.builtin_choice == *name, *name)
                        .clicked()
                    {
                        picked = Some(*name);
                    }
                }
            });
        if let Some(name) = picked {
            state.pick_builtin(name);
        }
    });
    ui.horizontal(|ui| {
        ui.label("name");
        if ui
            .add(egui::TextEdit::singleline(&mut state.draft.name).desired_width(200.0))
            .changed()
        {
            state.builtin_choice.clear();
        }
    });
    if phases_grid(ui, &mut state.draft.phases) {
        state.builtin_choice.clear();
    }
    ui.horizontal(|ui| {
        if ui.small_button("+ phase").clicked() {
            let n = state.draft.phases.len() + 1;
            state
                .draft
                .phases
                .push(Phase::habitual(format!("phase {n}"), 30));
            state.builtin_choice.clear();
        }
        ui.label(RichText::new(format!("{} days in total", state.draft.total_days())).small());
    });
    let valid = match state.draft.validate() {
        Ok(()) => true,
        Err(e) => {
            ui.label(RichText::new(e.to_string()).color(WARN).small());
            false
        }
    };

    // Files.
    ui.horizontal(|ui| {
        let waiting = state.dialog.is_some();
        if ui
            .add_enabled(!waiting, egui::Button::new("Load…"))
            .on_hover_text("Load a scenario TOML file")
            .clicked()
        {
            open_dialog(state, DialogPurpose::LoadScenario);
        }
        if ui
            .add_enabled(!waiting && valid, egui::Button::new("Save…"))
            .on_hover_text("Save the scenario as TOML")
            .clicked()
        {
            open_dialog(state, DialogPurpose::SaveScenario);
        }
        if waiting {
            ui.spinner();
        }
    });
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(&mut state.scenario_path)
                .hint_text("or type a .toml path")
                .desired_width(170.0),
        );
        let path = state.scenario_path.trim().to_string();
        if ui
            .add_enabled(!path.is_empty(), egui::Button::new("Load"))
            .clicked()
        {
            state.load_scenario_file(path.clone().into());
        }
        if ui
            .add_enabled(!path.is_empty() && valid, egui::Button::new("Save"))
            .clicked()
        {
            state.save_scenario_file(path.into());
        }
    });
    match &state.file_status {
        Some(Ok(m)) => {
            ui.label(RichText::new(m).color(OK).small());
        }
        Some(Err(m)) => {
            ui.label(RichText::new(m).color(WARN).small());
        }
        None => {}
    }

    // Apply.
    ui.horizontal(|ui| {
        ui.label("changes apply");
        ui.radio_value(&mut state.apply_mode, ApplyMode::NextDay, "from next day");
        ui.radio_value(&mut state.apply_mode, ApplyMode::Restart, "by restarting");
    });
    ui.horizontal(|ui| {
        let Some(sim) = sim else {
            return;
        };
        let has_run = state.info.is_some();
        if ui
            .add_enabled(valid && has_run, egui::Button::new("Apply to run"))
            .on_hover_text(
                "From next day: the days computed so far stay, the new phases apply from the \
                 next day. Restart: a new run from day 0 on the same vertebra.",
            )
            .clicked()
        {
            let mode = state.apply_mode;
            state.apply_draft(sim, mode);
        }
        let label = if has_run {
            "↺ Restart from day 0"
        } else {
            "▶ Run"
        };
        if ui
            .add_enabled(valid, egui::Button::new(RichText::new(label).strong()))
            .clicked()
        {
            state.run_draft_from_start(sim);
        }
    });
    if let Some(note) = &state.note {
        ui.label(RichText::new(note).small().weak());
    }
}

/// The phase table; returns whether anything changed.
fn phases_grid(ui: &mut egui::Ui, phases: &mut Vec<Phase>) -> bool {
    let mut changed = false;
    let mut remove = None;
    let mut swap = None;
    egui::Grid::new("phases-grid")
        .num_columns(7)
        .spacing([4.0, 3.0])
        .striped(true)
        .show(ui, |ui| {
            for h in ["phase", "days", "axial", "flexion", "PTH", ""] {
                ui.label(RichText::new(h).small().weak());
            }
            ui.end_row();
            let n = phases.len();
            for (i, p) in phases.iter_mut().enumerate() {
                changed |= ui
                    .add_sized([104.0, 20.0], egui::TextEdit::singleline(&mut p.name))
                    .changed();
                changed |= ui
                    .add(
                        egui::DragValue::new(&mut p.days)
                            .range(1..=36_500)
                            .speed(1.0),
                    )
                    .changed();
                changed |= ui
                    .add(
                        egui::DragValue::new(&mut p.load_scale.axial)
                            .range(0.0..=MAX_LOAD_SCALE)
                            .speed(0.01)
                            .fixed_decimals(2),
                    )
                    .on_hover_text("axial compression, × habitual")
                    .changed();
                changed |= ui
                    .add(
                        egui::DragValue::new(&mut p.load_scale.flexion)
                            .range(0.0..=MAX_LOAD_SCALE)
                            .speed(0.01)
                            .fixed_decimals(2),
                    )
                    .on_hover_text("flexion moment, × habitual")
                    .changed();
                changed |= ui
                    .add(
                        egui::DragValue::new(&mut p.pth_scale)
                            .range(0.01..=MAX_PTH_SCALE)
                            .speed(0.01)
                            .fixed_decimals(2),
                    )
                    .on_hover_text("PTH production, × normal")
                    .changed();
                ui.horizontal(|ui| {
                    ui.spacing_mut().item_spacing.x = 1.0;
                    if ui
                        .add_enabled(i > 0, egui::Button::new("⏶").small())
                        .on_hover_text("move up")
                        .clicked()
                    {
                        swap = Some(i);
                    }
                    if ui
                        .add_enabled(n > 1, egui::Button::new("🗑").small())
                        .on_hover_text("remove this phase")
                        .clicked()
                    {
                        remove = Some(i);
                    }
                });
                ui.end_row();
            }
        });
    if let Some(i) = swap {
        phases.swap(i - 1, i);
        changed = true;
    }
    if let Some(i) = remove {
        phases.remove(i);
        changed = true;
    }
    changed
}

fn vertebra_section(ui: &mut egui::Ui, sim: Option<&Sim>, state: &mut RemodelState) {
    egui::CollapsingHeader::new(RichText::new("Vertebra parameters").strong().color(ACCENT))
        .id_salt("vertebra-params")
        .default_open(true)
        .show(ui, |ui| {
            ui.label(
                RichText::new("built-in parametric L3 (not patient data)")
                    .small()
                    .weak(),
            );
            let p = &mut state.vertebra_params;
            egui::Grid::new("vertebra-grid").num_columns(2).show(ui, |ui| {
                let row = |ui: &mut egui::Ui, label: &str, v: &mut f64, lo: f64, hi: f64, unit: &str| {
                    ui.label(label);
                    ui.add(
                        egui::DragValue::new(v)
                            .range(lo..=hi)
                            .speed(0.1)
                            .suffix(format!(" {unit}")),
                    );
                    ui.end_row();
                };
                row(ui, "width (lateral)", &mut p.width_mm, 20.0, 90.0, "mm");
                row(ui, "depth (a-p)", &mut p.depth_mm, 15.0, 70.0, "mm");
                row(ui, "height", &mut p.height_mm, 10.0, 60.0, "mm");
                row(ui, "shell thickness", &mut p.shell_thickness_mm, 0.0, 5.0, "mm");
                row(
                    ui,
                    "endplate thickness",
                    &mut p.endplate_thickness_mm,
                    0.0,
                    5.0,
                    "mm",
                );
                row(
                    ui,
                    "trabecular BMD",
                    &mut p.trabecular_bmd_mg_cm3,
                    10.0,
                    500.0,
                    "mg/cm³",
                );
            });
            let check = p.validate();
            if let Err(e) = &check {
                ui.label(RichText::new(e.to_string()).color(WARN).small());
            }
            ui.horizontal(|ui| {
                if ui.small_button("defaults").clicked() {
                    state.vertebra_params = VertebraParams::default();
                }
                if let Some(sim) = sim
                    && ui
                        .add_enabled(check.is_ok(), egui::Button::new("Rebuild and restart"))
                        .on_hover_text("Build the vertebra with these parameters and run the scenario from day 0")
                        .clicked()
                {
                    let source = VertebraSource::Builtin(state.vertebra_params);
                    let scenario = state.draft.clone();
                    state.start(sim, source, scenario, false);
                }
            });
        });
    egui::CollapsingHeader::new(RichText::new("Vertebra from CT").strong().color(ACCENT))
        .id_salt("vertebra-ct")
        .default_open(false)
        .show(ui, |ui| {
            ui.label(
                RichText::new(
                    "A clinical CT in HU (DICOM folder, NIfTI, sidecar): a box around one \
                     vertebral body, endplate to endplate, and the phantom calibration.",
                )
                .small()
                .weak(),
            );
            ui.horizontal(|ui| {
                ui.add(
                    egui::TextEdit::singleline(&mut state.ct.path)
                        .hint_text("CT path")
                        .desired_width(200.0),
                );
                if ui
                    .add_enabled(state.dialog.is_none(), egui::Button::new("Browse…"))
                    .clicked()
                {
                    open_dialog(state, DialogPurpose::PickCt);
                }
            });
            let ct = &mut state.ct;
            egui::Grid::new("ct-grid").num_columns(4).show(ui, |ui| {
                ui.label("box start (voxels)");
                for v in &mut ct.box_min {
                    ui.add(egui::DragValue::new(v).range(0..=100_000));
                }
                ui.end_row();
                ui.label("box size (voxels)");
                for v in &mut ct.box_size {
                    ui.add(egui::DragValue::new(v).range(5..=100_000));
                }
                ui.end_row();
                ui.label("HU slope, intercept");
                ui.add(
                    egui::DragValue::new(&mut ct.calibration.slope_mg_per_hu)
                        .range(0.01..=10.0)
                        .speed(0.01),
                );
                ui.add(
                    egui::DragValue::new(&mut ct.calibration.intercept_mg_cm3)
                        .range(-1000.0..=1000.0)
                        .speed(0.5),
                );
                ui.end_row();
            });
            let has_path = !state.ct.path.trim().is_empty();
            if let Some(sim) = sim
                && ui
                    .add_enabled(has_path, egui::Button::new("Build from CT and restart"))
                    .clicked()
            {
                let source = state.ct.source();
                let scenario = state.draft.clone();
                state.start(sim, source, scenario, false);
            }
            if matches!(state.source, VertebraSource::Ct { .. })
                && state.status == RunStatus::Failed
                && let Some(m) = &state.message
            {
                ui.label(RichText::new(m).color(WARN).small());
            }
        });
}

/// The caption over the 3-D view (top left of the view).
pub fn vertebra_overlay(ctx: &egui::Context, left: f32, state: &RemodelState, view: &VertebraView) {
    egui::Area::new("vertebra-overlay".into())
        .fixed_pos(egui::pos2(left + 12.0, 10.0))
        .interactable(false)
        .show(ctx, |ui| {
            ui.add(
                egui::Label::new(
                    RichText::new(state.source.label())
                        .color(Color32::from_gray(225))
                        .strong(),
                )
                .extend(),
            );
            if let Some(info) = &state.info {
                let day = view.field_day.unwrap_or(state.shown_day);
                ui.label(
                    RichText::new(format!(
                        "BMD change vs day 0 · day {day} ({}) · scenario {}",
                        state.phase_label(day),
                        info.scenario.name
                    ))
                    .color(Color32::from_gray(205)),
                );
                let clip = if state.clip_enabled {
                    format!(
                        "sagittal section at x = {:.1} mm",
                        state.clip_x_mm.unwrap_or(0.0)
                    )
                } else {
                    "whole body".into()
                };
                ui.label(
                    RichText::new(format!("{clip} · z = cranio-caudal (up)"))
                        .small()
                        .color(Color32::from_gray(170)),
                );
            }
            ui.label(
                RichText::new(
                    "left-drag: orbit · right/middle-drag: pan · wheel: zoom · shift-drag: clip",
                )
                .small()
                .color(Color32::from_gray(150)),
            );
        });
}

/// The diverging BMD-change colour bar at the right edge of the 3-D view.
pub fn bmd_colour_bar_overlay(ctx: &egui::Context, right: f32, top: f32, scale: &DivergingScale) {
    super::ui::colour_bar_overlay(
        ctx,
        right,
        top,
        &super::ui::ColourBar {
            id: "colour-bar",
            title: "BMD change (%)",
            colour: &cool_warm_srgb,
            tick: &|t| {
                let v = scale.value_at(t);
                if v.abs() < 1e-6 {
                    "0".to_string()
                } else {
                    format!("{v:+.1}")
                }
            },
            footnote: "blue: loss · red: gain",
        },
    );
}
