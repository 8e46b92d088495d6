//! The microstructure view's panel: the ReconGAN generator (seed, BV/TV, Generate), the
//! real structure (the micro-CT sample or any loaded volume), a comparison table of the two
//! (morphometry after BoneJ, Doube et al. 2010, and the apparent modulus of the last solve),
//! solving either of them, the solver's progress, and the shared SED colour bar.
//!
//! The panel only edits [`UiState`] and sends runner commands through it.

use bevy_egui::egui::{self, Color32, RichText};
use egui_plot::{Line, Plot, PlotPoints};

use osteolab::fe::BoundaryCondition;
use osteolab::runner::{JobKind, MicroSlot, ModelInfo, ModelSource};

use super::bridge::{Sim, SlotState, ThresholdMode, UiState, open_file_dialog};
use super::colormap::{ColorScale, ScaleKind, viridis_srgb};
use super::scene::SceneState;

const ACCENT: Color32 = Color32::from_rgb(120, 190, 255);
const WARN: Color32 = Color32::from_rgb(255, 120, 110);
/// Width of each value column of the comparison table.
const VALUE_COLUMN: f32 = 92.0;

/// Text typed into the "path" box (a fallback when no desktop portal serves file dialogs).
#[derive(Default)]
pub struct PathInput(String);

/// The contents of the left panel in the microstructure view.
pub fn micro_panel(
    ui: &mut egui::Ui,
    sim: Option<&Sim>,
    state: &mut UiState,
    scene: &mut SceneState,
    path_input: &mut PathInput,
) {
    ui.label(RichText::new("trabecular micro-FE: real vs ReconGAN").weak());
    let busy = state.busy.is_some();
    generated_section(ui, sim, state, busy);
    ui.separator();
    real_section(ui, sim, state, path_input, busy);
    ui.separator();
    comparison_section(ui, state);
    ui.add_space(4.0);
    solve_section(ui, sim, state, busy);
    ui.separator();
    progress_section(ui, state);
    ui.separator();
    colour_section(ui, scene);
}

/// How the 3-D view labels a structure: "real micro-CT (0.039 mm)", "ReconGAN seed 3",
/// "synthetic test structure".
pub fn short_label(model: &ModelInfo) -> String {
    match &model.source {
        ModelSource::ReconGan(p) => format!("ReconGAN seed {}", p.seed),
        ModelSource::Synthetic(_) => "synthetic test structure".into(),
        ModelSource::File(_) => {
            format!("real micro-CT ({} mm)", fmt_mm(model.grid.voxel_size_mm[0]))
        }
    }
}

fn fmt_mm(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One line naming what a slot holds (or why it is empty).
fn slot_summary(ui: &mut egui::Ui, slot: &SlotState, empty: &str) {
    match &slot.model {
        Some(model) => {
            ui.horizontal_wrapped(|ui| {
                if model.is_synthetic() {
                    ui.label(
                        RichText::new(" SYNTHETIC ")
                            .small()
                            .strong()
                            .background_color(Color32::from_rgb(150, 95, 20))
                            .color(Color32::WHITE),
                    );
                }
                ui.label(RichText::new(&model.label).strong());
            });
            let d = model.grid.dims;
            let mut line = format!(
                "{}×{}×{} voxels of {:.1} µm",
                d.nx,
                d.ny,
                d.nz,
                model.grid.voxel_size_mm[0] * 1000.0
            );
            if let Some(t) = model.threshold {
                line.push_str(&format!(", grey threshold {t:.1}"));
            }
            ui.label(RichText::new(line).small());
        }
        None => match &slot.note {
            Some(note) => {
                ui.add(egui::Label::new(RichText::new(note).color(WARN)).wrap());
            }
            None => {
                ui.label(RichText::new(empty).weak());
            }
        },
    }
}

fn generated_section(ui: &mut egui::Ui, sim: Option<&Sim>, state: &mut UiState, busy: bool) {
    ui.label(RichText::new("Generated: ReconGAN").strong().color(ACCENT));
    slot_summary(ui, &state.slots.generated, "generating…");
    let card_mean = state.card.as_ref().ok().map(|c| c.bv_tv_mean);
    ui.horizontal(|ui| {
        ui.label("seed");
        ui.add(egui::DragValue::new(&mut state.recongan_seed).speed(1.0));
        ui.label("BV/TV");
        ui.add(egui::Slider::new(&mut state.recongan_bv_tv, 0.05..=0.50).fixed_decimals(3));
    });
    ui.horizontal(|ui| {
        let can = !busy && sim.is_some() && state.card.is_ok();
        if ui
            .add_enabled(can, egui::Button::new(RichText::new("Generate").strong()))
            .on_hover_text("Run the built-in generator on the latent vector of this seed, threshold to this BV/TV, keep the largest component")
            .clicked()
            && let Some(sim) = sim
        {
            state.generate_recongan(sim);
        }
        if let Some(mean) = card_mean
            && ui
                .add_enabled(
                    (state.recongan_bv_tv - mean).abs() > 1e-9,
                    egui::Button::new("card BV/TV").small(),
                )
                .on_hover_text(format!("the training cubes' mean, {mean:.3}"))
                .clicked()
        {
            state.recongan_bv_tv = mean;
        }
    });
    match &state.card {
        Ok(card) => {
            let a = card.architecture;
            ui.label(
                RichText::new(format!(
                    "built-in generator: {}³ cubes at {} mm, latent {}, trained on the micro-CT sample",
                    a.size,
                    fmt_mm(card.voxel_size_mm),
                    a.latent_dim
                ))
                .small()
                .weak(),
            );
        }
        Err(e) => {
            ui.label(RichText::new(format!("built-in generator unusable: {e}")).color(WARN));
        }
    }
    egui::CollapsingHeader::new("synthetic test structure")
        .id_salt("synthetic")
        .show(ui, |ui| {
            ui.label(
                RichText::new(
                    "procedural plane-wave structure, for tests; replaces the generated cube",
                )
                .small()
                .weak(),
            );
            ui.horizontal(|ui| {
                ui.label("BV/TV");
                ui.add(
                    egui::Slider::new(&mut state.synthetic_bv_tv, 0.05..=0.50).fixed_decimals(2),
                );
            });
            if ui
                .add_enabled(
                    !busy && sim.is_some(),
                    egui::Button::new("Generate synthetic"),
                )
                .clicked()
                && let Some(sim) = sim
            {
                let params = state.synthetic_params();
                state.send(sim, osteolab::runner::Command::GenerateSynthetic(params));
            }
        });
}

fn real_section(
    ui: &mut egui::Ui,
    sim: Option<&Sim>,
    state: &mut UiState,
    path_input: &mut PathInput,
    busy: bool,
) {
    ui.label(RichText::new("Real: micro-CT").strong().color(ACCENT));
    slot_summary(ui, &state.slots.real, "loading…");
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!busy && sim.is_some(), egui::Button::new("Micro-CT sample"))
            .on_hover_text("The shared sample, downsampled to the generator's voxel size, Otsu after σ = 1 smoothing, centred cube of the generator's size")
            .clicked()
            && let Some(sim) = sim
        {
            state.load_microct_sample(sim);
        }
        let waiting = state.file_dialog.is_some();
        if ui
            .add_enabled(!waiting, egui::Button::new("Load volume…"))
            .on_hover_text("A .json sidecar (+ .raw/.raw.gz), NIfTI or DICOM file, whole, segmented as set below")
            .clicked()
        {
            open_file_dialog(state, false);
        }
        if ui
            .add_enabled(!waiting, egui::Button::new("Folder…"))
            .on_hover_text("A DICOM series or an image stack")
            .clicked()
        {
            open_file_dialog(state, true);
        }
        if waiting {
            ui.spinner();
        }
    });
    egui::CollapsingHeader::new("path and segmentation")
        .id_salt("segmentation")
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                let edit = egui::TextEdit::singleline(&mut path_input.0)
                    .hint_text("or type a path")
                    .desired_width(220.0);
                let response = ui.add(edit);
                let enter = response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if (ui.button("Load").clicked() || enter)
                    && !path_input.0.trim().is_empty()
                    && let Some(sim) = sim
                {
                    state.load_volume(sim, path_input.0.trim().into());
                }
            });
            ui.horizontal(|ui| {
                ui.label("threshold");
                ui.radio_value(&mut state.threshold_mode, ThresholdMode::Otsu, "Otsu");
                ui.radio_value(&mut state.threshold_mode, ThresholdMode::Value, "value");
                ui.add_enabled(
                    state.threshold_mode == ThresholdMode::Value,
                    egui::DragValue::new(&mut state.threshold_value).speed(1.0),
                );
            });
            ui.horizontal(|ui| {
                ui.label("smoothing σ");
                ui.add(
                    egui::DragValue::new(&mut state.smoothing_sigma_voxels)
                        .range(0.0..=3.0)
                        .speed(0.05)
                        .suffix(" vox"),
                );
            });
        });
}

/// One table cell: the value, "–" when there is nothing, "n/a" (with the reason on hover)
/// when the morphometry is undefined.
fn cell(ui: &mut egui::Ui, value: Result<Option<String>, &str>) {
    let (text, hover) = match value {
        Ok(Some(v)) => (v, None),
        Ok(None) => ("–".to_string(), None),
        Err(reason) => ("n/a".to_string(), Some(reason)),
    };
    let response = ui.add_sized(
        [VALUE_COLUMN, 16.0],
        egui::Label::new(RichText::new(text).monospace()),
    );
    if let Some(h) = hover {
        response.on_hover_text(h);
    }
}

fn comparison_section(ui: &mut egui::Ui, state: &UiState) {
    ui.label(RichText::new("Comparison").strong().color(ACCENT));
    type Metric = (&'static str, fn(&osteolab::morph::Morphometry) -> String);
    let rows: [Metric; 7] = [
        ("BV/TV", |m| format!("{:.3}", m.bv_tv)),
        ("Tb.Th mm", |m| format!("{:.3}", m.tb_th_mm)),
        ("Tb.Sp mm", |m| format!("{:.3}", m.tb_sp_mm)),
        ("Tb.N 1/mm", |m| format!("{:.2}", m.tb_n_per_mm)),
        ("Conn.D 1/mm³", |m| format!("{:.1}", m.conn_d_per_mm3)),
        ("DA", |m| format!("{:.3}", m.da)),
        ("SMI", |m| format!("{:.2}", m.smi)),
    ];
    let slots = [&state.slots.real, &state.slots.generated];
    egui::Grid::new("comparison-grid")
        .num_columns(3)
        .striped(true)
        .spacing([6.0, 3.0])
        .show(ui, |ui| {
            ui.label("");
            for title in ["Real", "Generated"] {
                ui.add_sized(
                    [VALUE_COLUMN, 16.0],
                    egui::Label::new(RichText::new(title).strong()),
                );
            }
            ui.end_row();
            for (name, value) in rows {
                ui.label(name);
                for slot in slots {
                    let v = match &slot.morphometry {
                        Some(Ok(m)) => Ok(Some(value(m))),
                        Some(Err(reason)) => Err(reason.as_str()),
                        None => Ok(None),
                    };
                    cell(ui, v);
                }
                ui.end_row();
            }
            ui.label(RichText::new("E_app MPa").strong());
            for slot in slots {
                cell(ui, Ok(slot.fe.map(|fe| format!("{:.1}", fe.e_app_mpa))));
            }
            ui.end_row();
            ui.label("boundary");
            for slot in slots {
                cell(
                    ui,
                    Ok(slot.fe.map(|fe| bc_label(fe.request.bc).to_string())),
                );
            }
            ui.end_row();
            ui.label("PCG iterations");
            for slot in slots {
                cell(ui, Ok(slot.fe.map(|fe| format!("{}", fe.iterations))));
            }
            ui.end_row();
            ui.label("solve time");
            for slot in slots {
                cell(ui, Ok(slot.fe.map(|fe| format!("{:.1} s", fe.seconds))));
            }
            ui.end_row();
        });
}

fn solve_section(ui: &mut egui::Ui, sim: Option<&Sim>, state: &mut UiState, busy: bool) {
    ui.horizontal(|ui| {
        for (slot, text) in [
            (MicroSlot::Real, "▶ Solve real"),
            (MicroSlot::Generated, "▶ Solve generated"),
        ] {
            let can = !busy && sim.is_some() && state.slots.get(slot).model.is_some();
            if ui
                .add_enabled(can, egui::Button::new(RichText::new(text).strong()))
                .clicked()
                && let Some(sim) = sim
            {
                state.solve(sim, slot);
            }
        }
        if ui
            .add_enabled(busy, egui::Button::new("■ Cancel"))
            .clicked()
            && let Some(sim) = sim
        {
            state.send(sim, osteolab::runner::Command::Cancel);
        }
    });
    ui.horizontal(|ui| {
        ui.label("boundary");
        egui::ComboBox::from_id_salt("bc")
            .selected_text(bc_label(state.bc))
            .show_ui(ui, |ui| {
                for bc in [
                    BoundaryCondition::AxialFree,
                    BoundaryCondition::AxialClamped,
                    BoundaryCondition::AxialConfined,
                ] {
                    ui.selectable_value(&mut state.bc, bc, bc_label(bc));
                }
            });
        ui.label(RichText::new(format!("εz {:.4}", state.strain)).small());
    });
    egui::CollapsingHeader::new("material and load")
        .id_salt("material")
        .show(ui, |ui| {
            egui::Grid::new("load-grid").num_columns(2).show(ui, |ui| {
                ui.label("tissue E");
                ui.add(
                    egui::DragValue::new(&mut state.young_modulus_mpa)
                        .range(1.0..=1.0e6)
                        .speed(50.0)
                        .suffix(" MPa"),
                );
                ui.end_row();
                ui.label("Poisson ν");
                ui.add(
                    egui::DragValue::new(&mut state.poisson_ratio)
                        .range(0.0..=0.49)
                        .speed(0.005)
                        .fixed_decimals(3),
                );
                ui.end_row();
                ui.label("strain εz");
                ui.add(
                    egui::DragValue::new(&mut state.strain)
                        .range(-0.1..=0.1)
                        .speed(0.0005)
                        .fixed_decimals(4),
                );
                ui.end_row();
                ui.label("tolerance");
                ui.add(
                    egui::Slider::new(&mut state.tolerance_exponent, -10..=-3)
                        .custom_formatter(|v, _| format!("1e{v}")),
                );
                ui.end_row();
            });
        });
}

fn progress_section(ui: &mut egui::Ui, state: &UiState) {
    ui.label(RichText::new("Solver").strong().color(ACCENT));
    if let Some(busy) = &state.busy {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!(
                "{} running, {:.1} s",
                busy.kind.label(),
                busy.since.elapsed().as_secs_f32()
            ));
        });
        ui.add(egui::Label::new(RichText::new(&state.stage).small()).wrap());
        if busy.kind == JobKind::Solve
            && let Some(last) = state.residuals.last()
        {
            ui.label(format!(
                "iteration {}, residual {:.2e}",
                last[0],
                10f64.powf(last[1])
            ));
        }
    } else {
        ui.label(&state.status);
    }
    if let Some(err) = &state.error {
        ui.label(RichText::new(err).color(WARN));
    }
    ui.add_space(6.0);
    let points: PlotPoints = state.residuals.clone().into();
    let target = state.tolerance_exponent as f64;
    Plot::new("residual-plot")
        .height(90.0)
        .x_axis_label("PCG iteration")
        .y_axis_label("log10 resid.")
        .include_y(0.0)
        .include_y(target)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .show(ui, |plot| {
            plot.line(
                Line::new("relative residual", points)
                    .color(ACCENT)
                    .width(1.5),
            );
            plot.hline(
                egui_plot::HLine::new("tolerance", target)
                    .color(Color32::from_gray(130))
                    .style(egui_plot::LineStyle::dashed_dense()),
            );
        });
}

fn colour_section(ui: &mut egui::Ui, scene: &mut SceneState) {
    ui.label(
        RichText::new("Strain energy density")
            .strong()
            .color(ACCENT),
    );
    let solved: Vec<_> = scene
        .shown
        .as_ref()
        .map(|snap| {
            MicroSlot::ALL
                .iter()
                .filter_map(|&slot| snap.get(slot).and_then(|s| Some((slot, s.fe?))))
                .collect()
        })
        .unwrap_or_default();
    if solved.is_empty() {
        ui.label(RichText::new("solve to colour the surfaces by SED").weak());
        return;
    }
    ui.horizontal(|ui| {
        ui.label("scale");
        let before = scene.scale_kind;
        ui.radio_value(&mut scene.scale_kind, ScaleKind::Log, "log");
        ui.radio_value(&mut scene.scale_kind, ScaleKind::Linear, "linear");
        if scene.scale_kind != before {
            scene.dirty = true;
        }
    });
    if let Some(scale) = scene.color_scale {
        colour_bar(ui, &scale);
    }
    for (slot, fe) in solved {
        ui.label(
            RichText::new(format!(
                "{}: surface {} – {} MPa, voxels {} – {} MPa",
                slot.label(),
                fmt_value(fe.surface_sed_range_mpa[0]),
                fmt_value(fe.surface_sed_range_mpa[1]),
                fmt_value(fe.sed_range_mpa[0]),
                fmt_value(fe.sed_range_mpa[1])
            ))
            .small(),
        );
    }
    ui.label(
        RichText::new("one colour range for both: 2nd–98th percentile of their surface values")
            .small()
            .weak(),
    );
}

/// A horizontal viridis bar with five labelled ticks.
fn colour_bar(ui: &mut egui::Ui, scale: &ColorScale) {
    let width = ui.available_width().min(300.0);
    let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 18.0), egui::Sense::hover());
    let painter = ui.painter_at(rect.expand(1.0));
    let steps = 64;
    for i in 0..steps {
        let t0 = i as f32 / steps as f32;
        let t1 = (i + 1) as f32 / steps as f32;
        let c = viridis_srgb((t0 + t1) * 0.5);
        let color = Color32::from_rgb(
            (c[0] * 255.0).round() as u8,
            (c[1] * 255.0).round() as u8,
            (c[2] * 255.0).round() as u8,
        );
        let r = egui::Rect::from_min_max(
            egui::pos2(rect.left() + t0 * width, rect.top()),
            egui::pos2(rect.left() + t1 * width + 0.5, rect.bottom()),
        );
        painter.rect_filled(r, 0.0, color);
    }
    painter.rect_stroke(
        rect,
        0.0,
        egui::Stroke::new(1.0, Color32::from_gray(90)),
        egui::StrokeKind::Outside,
    );
    let (labels_rect, _) = ui.allocate_exact_size(egui::vec2(width, 16.0), egui::Sense::hover());
    let painter = ui.painter_at(labels_rect.expand2(egui::vec2(4.0, 0.0)));
    let ticks = 4;
    for i in 0..=ticks {
        let t = i as f32 / ticks as f32;
        let x = labels_rect.left() + t * width;
        let align = match i {
            0 => egui::Align2::LEFT_TOP,
            i if i == ticks => egui::Align2::RIGHT_TOP,
            _ => egui::Align2::CENTER_TOP,
        };
        painter.text(
            egui::pos2(x, labels_rect.top()),
            align,
            fmt_value(scale.value_at(t)),
            egui::FontId::proportional(11.0),
            ui.visuals().text_color(),
        );
    }
    ui.label(
        RichText::new(match scale.kind {
            ScaleKind::Log => "SED, MPa (= mJ/mm³), log scale",
            ScaleKind::Linear => "SED, MPa (= mJ/mm³), linear scale",
        })
        .small(),
    );
}

pub fn bc_label(bc: BoundaryCondition) -> &'static str {
    match bc {
        BoundaryCondition::AxialFree => "axial-free",
        BoundaryCondition::AxialClamped => "axial-clamped",
        BoundaryCondition::AxialConfined => "axial-confined",
        BoundaryCondition::Kubc => "kubc",
    }
}

/// Three significant digits, scientific notation outside [0.01, 10 000).
fn fmt_value(v: f32) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(0.01..10_000.0).contains(&a) {
        format!("{v:.2e}")
    } else if a < 1.0 {
        format!("{v:.3}")
    } else if a < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}
