//! The egui panels. The left panel switches between the two views: the vertebra view
//! (`vertebra_panel`, with the timeline of `timeline` at the bottom) and the microstructure
//! view (`micro_panel`: ReconGAN and real structure, their comparison table, solves, solver
//! progress and the SED colour bar). The panels only edit state resources and send runner
//! commands; the 3-D camera renders into the area right of the left panel and above the
//! timeline, where the overlays label what is shown.

use bevy::camera::SubCameraView;
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::EguiContexts;
use bevy_egui::egui::{self, Color32, RichText};

use osteolab::runner::{MicroSlot, SED_FIELD};

use super::bridge::{Sim, UiState};
use super::colormap::DivergingScale;
use super::fracture::{FractureState, VertebraMode};
use super::fracture_panel::{
    FRACTURE_PLOT_HEIGHT, damage_colour_bar_overlay, fracture_overlay, fracture_panel_ui,
    fracture_timeline_ui, vertebra_mode_switch,
};
use super::fracture_scene::FractureView;
use super::micro_panel::{PathInput, micro_panel, short_label};
use super::multiscale::{MicroMode, MultiscaleState};
use super::multiscale_panel::{
    MULTISCALE_TIMELINE_HEIGHT, mode_switch_ui, multiscale_overlay, multiscale_panel_ui,
    multiscale_timeline_ui,
};
use super::multiscale_scene::MultiscaleView;
use super::remodel::RemodelState;
use super::scene::{MainCamera, SceneState, ViewKind, ViewportLayout};
use super::timeline::{TIMELINE_HEIGHT, timeline_ui};
use super::vertebra::VertebraView;
use super::vertebra_panel::{bmd_colour_bar_overlay, vertebra_overlay, vertebra_panel};

const PANEL_WIDTH: f32 = 390.0;

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
    mut camera: Query<(&mut Camera, &GlobalTransform), With<MainCamera>>,
    window: Query<&Window, With<PrimaryWindow>>,
    mut path_input: Local<PathInput>,
    (mut multiscale, ms_view): (ResMut<MultiscaleState>, Res<MultiscaleView>),
    (mut fracture, fr_view): (ResMut<FractureState>, Res<FractureView>),
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
                    ViewKind::Micro => {
                        mode_switch_ui(ui, &mut multiscale);
                        match multiscale.mode {
                            MicroMode::Compare => micro_panel(
                                ui,
                                sim.as_deref(),
                                &mut ui_state,
                                &mut scene,
                                &mut path_input,
                            ),
                            MicroMode::Multiscale => multiscale_panel_ui(
                                ui,
                                sim.as_deref(),
                                &mut multiscale,
                                &ui_state,
                                &scene,
                            ),
                        }
                    }
                    ViewKind::Vertebra => {
                        vertebra_mode_switch(ui, &mut fracture);
                        match fracture.mode {
                            VertebraMode::Remodeling => {
                                vertebra_panel(ui, sim.as_deref(), &mut remodel, &vertebra)
                            }
                            VertebraMode::Fracture => fracture_panel_ui(
                                ui,
                                sim.as_deref(),
                                &mut fracture,
                                &multiscale,
                                &ui_state,
                            ),
                        }
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
    let bottom = if view == ViewKind::Vertebra && fracture.mode == VertebraMode::Fracture {
        egui::Panel::bottom("osteolab-fracture-curves")
            .resizable(true)
            .default_size(FRACTURE_PLOT_HEIGHT)
            .min_size(160.0)
            .max_size(560.0)
            .show(&mut root, |ui| {
                fracture_timeline_ui(ui, &mut fracture);
            })
            .response
            .rect
            .height()
    } else if view == ViewKind::Vertebra {
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
    } else if multiscale.mode == MicroMode::Multiscale {
        egui::Panel::bottom("osteolab-ms-timeline")
            .resizable(true)
            .default_size(MULTISCALE_TIMELINE_HEIGHT)
            .min_size(140.0)
            .max_size(480.0)
            .show(&mut root, |ui| {
                multiscale_timeline_ui(ui, &multiscale);
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
    let mut anchors_on_screen = [None, None];
    let mut ms_anchors = Vec::new();
    if let (Ok(window), Ok((mut camera, camera_transform))) = (window.single(), camera.single_mut())
    {
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
        for (i, slot) in MicroSlot::ALL.into_iter().enumerate() {
            anchors_on_screen[i] = scene
                .label_anchors
                .get(slot)
                .and_then(|p| camera.world_to_viewport(camera_transform, p).ok());
        }
        ms_anchors = ms_view
            .shown
            .iter()
            .map(|s| camera.world_to_viewport(camera_transform, s.anchor).ok())
            .collect();
    }
    match view {
        ViewKind::Micro if multiscale.mode == MicroMode::Multiscale => {
            multiscale_overlay(&ctx, left, &multiscale, &ms_view, &ms_anchors);
        }
        ViewKind::Micro => {
            viewport_overlay(&ctx, left, &scene);
            for (i, slot) in MicroSlot::ALL.into_iter().enumerate() {
                if let Some(at) = anchors_on_screen[i] {
                    structure_label(&ctx, slot, at, &scene);
                }
            }
        }
        ViewKind::Vertebra if fracture.mode == VertebraMode::Fracture => {
            fracture_overlay(&ctx, left, &fracture, &fr_view);
            damage_colour_bar_overlay(&ctx, ctx.viewport_rect().right(), 0.0);
        }
        ViewKind::Vertebra => {
            vertebra_overlay(&ctx, left, &remodel, &vertebra);
            let right = ctx.viewport_rect().right();
            let scale = DivergingScale::new(remodel.range_min_pct, remodel.range_max_pct);
            bmd_colour_bar_overlay(&ctx, right, 0.0, &scale);
        }
    }
    Ok(())
}

/// A short overlay in the 3-D view: what is shown and how to move the camera.
fn viewport_overlay(ctx: &egui::Context, panel_width: f32, scene: &SceneState) {
    egui::Area::new("viewport-overlay".into())
        .fixed_pos(egui::pos2(panel_width + 12.0, 10.0))
        .interactable(false)
        .show(ctx, |ui| {
            if let Some(snapshot) = &scene.shown {
                let shown: Vec<_> = MicroSlot::ALL
                    .iter()
                    .filter_map(|&s| snapshot.get(s))
                    .collect();
                let coloured = shown.iter().any(|s| s.field(SED_FIELD).is_some());
                let what = match (shown.len(), coloured) {
                    (2, true) => "real (left) and generated (right), coloured by strain energy density on one scale",
                    (2, false) => "real (left) and generated (right) bone surfaces",
                    (_, true) => "surface coloured by strain energy density",
                    _ => "bone surface",
                };
                ui.add(
                    egui::Label::new(RichText::new(what).color(Color32::from_gray(220))).extend(),
                );
                let triangles: Vec<String> = shown
                    .iter()
                    .map(|s| format!("{} (step {})", s.mesh.indices.len() / 3, s.mesh_step))
                    .collect();
                if !triangles.is_empty() {
                    ui.label(
                        RichText::new(format!(
                            "triangles {}, z = loading axis (up)",
                            triangles.join(" + ")
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

/// The name of one structure, centred above it in the 3-D view (`at`: the projected
/// anchor, logical pixels), with its E_app once solved.
fn structure_label(ctx: &egui::Context, slot: MicroSlot, at: Vec2, scene: &SceneState) {
    let Some(shown) = scene.shown.as_ref().and_then(|s| s.get(slot)) else {
        return;
    };
    let mut text = short_label(&shown.model);
    if let Some(fe) = shown.fe {
        text.push_str(&format!(" · E_app {:.0} MPa", fe.e_app_mpa));
    }
    floating_label(
        ctx,
        egui::Id::new(("structure-label", slot.label())),
        at,
        text,
    );
}

/// A label on a dark translucent plate, its bottom centre at `at` (logical pixels): the name of
/// a structure above it in the 3-D view.
pub fn floating_label(ctx: &egui::Context, id: egui::Id, at: Vec2, text: String) {
    egui::Area::new(id)
        .fixed_pos(egui::pos2(at.x, at.y))
        .pivot(egui::Align2::CENTER_BOTTOM)
        .interactable(false)
        .show(ctx, |ui| {
            egui::Frame::new()
                .fill(Color32::from_black_alpha(155))
                .corner_radius(4.0)
                .inner_margin(egui::Margin::symmetric(8, 4))
                .show(ui, |ui| {
                    ui.add(
                        egui::Label::new(
                            RichText::new(text).strong().color(Color32::from_gray(235)),
                        )
                        .extend(),
                    );
                });
        });
}

/// What a vertical colour bar at the right edge of the 3-D view shows.
pub struct ColourBar<'a> {
    pub id: &'a str,
    pub title: &'a str,
    /// The colour at t ∈ [0, 1] (bottom to top), sRGB in [0, 1].
    pub colour: &'a dyn Fn(f32) -> [f32; 3],
    /// The tick label at t.
    pub tick: &'a dyn Fn(f32) -> String,
    pub footnote: &'a str,
}

/// Draws `bar` with ticks at 0, ¼, ½, ¾ and 1, its right edge `right` logical pixels from the
/// left of the window and its top at `top`.
pub fn colour_bar_overlay(ctx: &egui::Context, right: f32, top: f32, bar: &ColourBar) {
    let size = egui::vec2(18.0, 200.0);
    egui::Area::new(egui::Id::new(bar.id))
        .fixed_pos(egui::pos2(right - 100.0, top + 16.0))
        .interactable(false)
        .show(ctx, |ui| {
            ui.label(
                RichText::new(bar.title)
                    .color(Color32::from_gray(225))
                    .strong(),
            );
            ui.add_space(4.0);
            let (rect, _) = ui.allocate_exact_size(egui::vec2(90.0, size.y), egui::Sense::hover());
            let bar_rect = egui::Rect::from_min_size(rect.min, size);
            let painter = ui.painter();
            let steps = 64;
            for i in 0..steps {
                let t0 = i as f32 / steps as f32;
                let t1 = (i + 1) as f32 / steps as f32;
                let c = (bar.colour)(1.0 - 0.5 * (t0 + t1));
                let color = Color32::from_rgb(
                    (c[0] * 255.0).round() as u8,
                    (c[1] * 255.0).round() as u8,
                    (c[2] * 255.0).round() as u8,
                );
                let r = egui::Rect::from_min_max(
                    egui::pos2(bar_rect.left(), bar_rect.top() + t0 * size.y),
                    egui::pos2(bar_rect.right(), bar_rect.top() + t1 * size.y + 0.5),
                );
                painter.rect_filled(r, 0.0, color);
            }
            painter.rect_stroke(
                bar_rect,
                0.0,
                egui::Stroke::new(1.0, Color32::from_gray(90)),
                egui::StrokeKind::Outside,
            );
            for t in [1.0f32, 0.75, 0.5, 0.25, 0.0] {
                let y = bar_rect.top() + (1.0 - t) * size.y;
                painter.line_segment(
                    [
                        egui::pos2(bar_rect.right(), y),
                        egui::pos2(bar_rect.right() + 4.0, y),
                    ],
                    egui::Stroke::new(1.0, Color32::from_gray(200)),
                );
                painter.text(
                    egui::pos2(bar_rect.right() + 7.0, y),
                    egui::Align2::LEFT_CENTER,
                    (bar.tick)(t),
                    egui::FontId::proportional(12.0),
                    Color32::from_gray(225),
                );
            }
            ui.add_space(8.0);
            ui.label(
                RichText::new(bar.footnote)
                    .small()
                    .color(Color32::from_gray(170)),
            );
        });
}
