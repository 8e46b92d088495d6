//! The egui panels. The left panel switches between the two views: the vertebra view
//! (`vertebra_panel`, with the timeline of `timeline` at the bottom) and the microstructure
//! view (microstructure, material and load, solver progress, results, and the SED colour
//! bar). The panels only edit state resources and send runner commands; the 3-D camera
//! renders into the area right of the left panel and above the timeline.

use bevy::camera::SubCameraView;
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::EguiContexts;
use bevy_egui::egui::{self, Color32, RichText};
use egui_plot::{Line, Plot, PlotPoints};

use osteolab::fe::BoundaryCondition;
use osteolab::runner::{Command, JobKind, SED_FIELD};

use super::bridge::{Sim, ThresholdMode, UiState, open_file_dialog};
use super::colormap::{ColorScale, DivergingScale, ScaleKind, viridis_srgb};
use super::remodel::RemodelState;
use super::scene::{MainCamera, SceneState, ViewKind, ViewportLayout};
use super::timeline::{TIMELINE_HEIGHT, timeline_ui};
use super::vertebra::VertebraView;
use super::vertebra_panel::{colour_bar_overlay, vertebra_overlay, vertebra_panel};

const PANEL_WIDTH: f32 = 390.0;
const ACCENT: Color32 = Color32::from_rgb(120, 190, 255);
const WARN: Color32 = Color32::from_rgb(255, 120, 110);

/// Text typed into the "path" box (a fallback when no desktop portal serves file dialogs).
#[derive(Default)]
pub struct PathInput(String);

/// The panels of both views: the left panel (view switch, then the view's controls), in
/// the vertebra view the timeline at the bottom, and the overlays over the 3-D area.
#[allow(clippy::too_many_arguments)]
pub fn panels_ui(
    mut contexts: EguiContexts,
    sim: Option<Res<Sim>>,
    mut ui_state: ResMut<UiState>,
    mut scene: ResMut<SceneState>,
    mut remodel: ResMut<RemodelState>,
    vertebra: Res<VertebraView>,
    mut active: ResMut<ViewKind>,
    mut layout: ResMut<ViewportLayout>,
    mut camera: Query<&mut Camera, With<MainCamera>>,
    window: Query<&Window, With<PrimaryWindow>>,
    mut path_input: Local<PathInput>,
) -> Result {
    let ctx = contexts.ctx_mut()?.clone();
    let mut root = egui::Ui::new(
        ctx.clone(),
        "osteolab-root".into(),
        egui::UiBuilder::new()
            .layer_id(egui::LayerId::background())
            .max_rect(ctx.viewport_rect()),
    );
    let mut view = *active;
    let panel = egui::Panel::left("osteolab-panel")
        .resizable(true)
        .default_size(PANEL_WIDTH)
        .min_size(300.0)
        .max_size(600.0)
        .show(&mut root, |ui| {
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                ui.heading(RichText::new("osteolab").strong());
                ui.add_space(8.0);
                for v in [ViewKind::Vertebra, ViewKind::Micro] {
                    ui.selectable_value(&mut view, v, v.label());
                }
            });
            ui.separator();
            egui::ScrollArea::vertical().show(ui, |ui| {
                match view {
                    ViewKind::Micro => panel_contents(
                        ui,
                        sim.as_deref(),
                        &mut ui_state,
                        &mut scene,
                        &mut path_input,
                    ),
                    ViewKind::Vertebra => {
                        vertebra_panel(ui, sim.as_deref(), &mut remodel, &vertebra)
                    }
                }
                ui.separator();
                ui.label(RichText::new(scene.quality.label()).small().weak());
                ui.label(
                    RichText::new(format!("frame {:.1} ms", ui_state.frame_ms))
                        .small()
                        .weak(),
                );
            });
        });
    let left = panel.response.rect.width();
    let bottom = if view == ViewKind::Vertebra {
        egui::Panel::bottom("osteolab-timeline")
            .resizable(true)
            .default_size(TIMELINE_HEIGHT)
            .min_size(160.0)
            .max_size(520.0)
            .show(&mut root, |ui| {
                timeline_ui(ui, sim.as_deref(), &mut remodel, &vertebra);
            })
            .response
            .rect
            .height()
    } else {
        0.0
    };
    active.set_if_neq(view);

    // egui draws on the 3-D camera (a second, egui-only camera costs a full-screen pass, about
    // 13 ms per frame under llvmpipe). An off-centre frustum puts the principal point in the
    // middle of the area right of the panel and above the timeline: the window is the
    // top-left part of a virtual image `left` pixels wider and `bottom` pixels taller, placed
    // `bottom` pixels down in it.
    if let (Ok(window), Ok(mut camera)) = (window.single(), camera.single_mut()) {
        let w = window.physical_width().max(1);
        let h = window.physical_height().max(1);
        let scale = window.scale_factor();
        let panel = ((left * scale).round() as u32).min(w - 1);
        let below = ((bottom * scale).round() as u32).min(h - 1);
        let sub = SubCameraView {
            full_size: UVec2::new(w + panel, h + below),
            offset: Vec2::new(0.0, below as f32),
            size: UVec2::new(w, h),
        };
        if camera.sub_camera_view != Some(sub) {
            camera.sub_camera_view = Some(sub);
        }
        layout.set_if_neq(ViewportLayout {
            window: Vec2::new(window.width(), window.height()),
            left_panel: left,
            bottom_panel: bottom,
        });
    }
    match view {
        ViewKind::Micro => viewport_overlay(&ctx, left, &ui_state, &scene),
        ViewKind::Vertebra => {
            vertebra_overlay(&ctx, left, &remodel, &vertebra);
            let right = ctx.viewport_rect().right();
            let scale = DivergingScale::new(remodel.range_min_pct, remodel.range_max_pct);
            colour_bar_overlay(&ctx, right, 0.0, &scale);
        }
    }
    Ok(())
}

fn panel_contents(
    ui: &mut egui::Ui,
    sim: Option<&Sim>,
    state: &mut UiState,
    scene: &mut SceneState,
    path_input: &mut PathInput,
) {
    ui.label(RichText::new("trabecular micro-FE").weak());
    let busy = state.busy.is_some();
    microstructure_section(ui, sim, state, path_input, busy);
    ui.separator();
    load_section(ui, sim, state, busy);
    ui.separator();
    progress_section(ui, state);
    ui.separator();
    colour_section(ui, scene);
    ui.separator();
    results_section(ui, state);
}

fn microstructure_section(
    ui: &mut egui::Ui,
    sim: Option<&Sim>,
    state: &mut UiState,
    path_input: &mut PathInput,
    busy: bool,
) {
    ui.label(RichText::new("Microstructure").strong().color(ACCENT));
    match &state.model {
        Some(model) => {
            ui.horizontal(|ui| {
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
            let vs = model.grid.voxel_size_mm;
            ui.label(format!(
                "{} × {} × {} voxels of {:.1} µm, BV/TV {:.3}",
                d.nx,
                d.ny,
                d.nz,
                vs[0] * 1000.0,
                model.bv_tv
            ));
            if let Some(t) = model.threshold {
                ui.label(RichText::new(format!("segmented at grey value {t:.1}")).small());
            }
        }
        None => {
            ui.label(RichText::new("none loaded").weak());
        }
    }
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        let waiting = state.file_dialog.is_some();
        if ui
            .add_enabled(!waiting, egui::Button::new("Open volume…"))
            .on_hover_text("A .json sidecar (+ .raw/.raw.gz), NIfTI or DICOM file")
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
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.label("synthetic BV/TV");
        ui.add(egui::Slider::new(&mut state.synthetic_bv_tv, 0.05..=0.50).fixed_decimals(2));
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
        state.send(sim, Command::GenerateSynthetic(params));
    }
}

fn load_section(ui: &mut egui::Ui, sim: Option<&Sim>, state: &mut UiState, busy: bool) {
    ui.label(RichText::new("Material and load").strong().color(ACCENT));
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
    ui.horizontal(|ui| {
        let can_solve = !busy && state.model.is_some() && sim.is_some();
        if ui
            .add_enabled(
                can_solve,
                egui::Button::new(RichText::new("▶ Solve").strong()).min_size([90.0, 24.0].into()),
            )
            .clicked()
            && let Some(sim) = sim
        {
            let request = state.solve_request();
            state.send(sim, Command::Solve(request));
        }
        if ui
            .add_enabled(
                busy,
                egui::Button::new("■ Cancel").min_size([90.0, 24.0].into()),
            )
            .clicked()
            && let Some(sim) = sim
        {
            state.send(sim, Command::Cancel);
        }
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
        .height(110.0)
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

fn results_section(ui: &mut egui::Ui, state: &UiState) {
    ui.label(RichText::new("Results").strong().color(ACCENT));
    let Some(fe) = &state.fe else {
        ui.label(RichText::new("no solution yet").weak());
        return;
    };
    egui::Grid::new("results-grid")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.label(k);
                ui.label(RichText::new(v).monospace());
                ui.end_row();
            };
            row("boundary", bc_label(fe.request.bc).into());
            row("DOFs", format!("{}", fe.dofs));
            row("elements", format!("{}", fe.elements));
            row("iterations", format!("{}", fe.iterations));
            row("residual", format!("{:.2e}", fe.relative_residual));
            row("reaction force", format!("{:.4} N", fe.reaction_force_n));
            row("E_app", format!("{:.1} MPa", fe.e_app_mpa));
            row("strain energy", format!("{:.4e} mJ", fe.strain_energy_mj));
            row("time", format!("{:.2} s", fe.seconds));
        });
}

fn colour_section(ui: &mut egui::Ui, scene: &mut SceneState) {
    ui.label(
        RichText::new("Strain energy density")
            .strong()
            .color(ACCENT),
    );
    let has_field = scene
        .shown
        .as_ref()
        .is_some_and(|s| s.field(SED_FIELD).is_some());
    if !has_field {
        ui.label(RichText::new("solve to colour the surface by SED").weak());
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
    if let Some(fe) = scene.shown.as_ref().and_then(|s| s.fe) {
        ui.label(
            RichText::new(format!(
                "surface min / max: {} / {} MPa",
                fmt_value(fe.surface_sed_range_mpa[0]),
                fmt_value(fe.surface_sed_range_mpa[1])
            ))
            .small(),
        );
        ui.label(
            RichText::new(format!(
                "voxel min / max: {} / {} MPa",
                fmt_value(fe.sed_range_mpa[0]),
                fmt_value(fe.sed_range_mpa[1])
            ))
            .small(),
        );
        ui.label(
            RichText::new("colour range: 2nd–98th percentile of the surface values")
                .small()
                .weak(),
        );
    }
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

/// A short overlay in the 3-D view: what is shown and how to move the camera.
fn viewport_overlay(ctx: &egui::Context, panel_width: f32, state: &UiState, scene: &SceneState) {
    egui::Area::new("viewport-overlay".into())
        .fixed_pos(egui::pos2(panel_width + 12.0, 10.0))
        .interactable(false)
        .show(ctx, |ui| {
            if let Some(model) = &state.model {
                let what = if scene
                    .shown
                    .as_ref()
                    .is_some_and(|s| s.field(SED_FIELD).is_some())
                {
                    "surface coloured by strain energy density"
                } else {
                    "bone surface"
                };
                let label = if model.is_synthetic() && !model.label.starts_with("synthetic") {
                    format!("synthetic: {}", model.label)
                } else {
                    model.label.clone()
                };
                ui.add(
                    egui::Label::new(RichText::new(label).color(Color32::from_gray(225))).extend(),
                );
                ui.label(RichText::new(what).color(Color32::from_gray(200)));
                if let Some(s) = &scene.shown {
                    ui.label(
                        RichText::new(format!(
                            "{} triangles (mesh step {}), z = loading axis (up)",
                            s.mesh.indices.len() / 3,
                            s.mesh_step
                        ))
                        .small()
                        .color(Color32::from_gray(170)),
                    );
                }
            }
            ui.label(
                RichText::new("left-drag: orbit · right/middle-drag: pan · wheel: zoom")
                    .small()
                    .color(Color32::from_gray(150)),
            );
        });
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
