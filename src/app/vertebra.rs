//! The vertebra in the 3-D scene: the body surface (clipped by the sagittal plane and capped)
//! coloured by the BMD change of the displayed day.
//!
//! The geometry (surface, per-vertex sampler, section) comes from the runner
//! (`osteolab::runner::section`); here it is only turned into a `bevy::Mesh`. A section is
//! recomputed when the clip plane moves (a few milliseconds: clipping ~10 k triangles and
//! contouring one slice), and recoloured when the displayed day or the colour range changes
//! (one pass over the sampler table, then the colour attribute).

use std::sync::Arc;

use bevy::camera::visibility::NoFrustumCulling;
use bevy::input::mouse::AccumulatedMouseMotion;
use bevy::prelude::*;
use bevy::window::RequestRedraw;
use bevy_egui::input::EguiWantsInput;

use osteolab::runner::JobId;
use osteolab::runner::section::{ClipPlane, SectionMesh, VertebraGeometry};

use super::bridge::{BridgeSet, Sim};
use super::camera::OrbitCamera;
use super::colormap::DivergingScale;
use super::remodel::RemodelState;
use super::scene::{
    MODEL_DIAGONAL_UNITS, MainCamera, RenderQuality, SceneState, ViewKind, ViewportLayout,
    srgb_to_linear_rgba,
};

/// Colour of vertices without a value (sRGB).
const NO_DATA_SRGB: [f32; 3] = [0.45, 0.45, 0.45];

/// The vertebra entity and what it currently shows.
#[derive(Resource)]
pub struct VertebraView {
    pub(super) root: Entity,
    entity: Entity,
    mesh: Option<Handle<Mesh>>,
    geometry: Option<Arc<VertebraGeometry>>,
    section: Option<SectionMesh>,
    section_key: Option<(bool, u32, bool)>,
    /// (run, stored day, colour range bits) of the colours on screen.
    colour_key: Option<(JobId, u32, u32, u32)>,
    field: Vec<f32>,
    values: Vec<f32>,
    /// The day whose field is on screen (the nearest stored day at or below the shown day).
    pub field_day: Option<u32>,
    /// Frames rendered since the vertebra mesh last changed.
    pub frames_since_shown: u32,
    /// Whether a vertebra mesh is on screen.
    pub has_mesh: bool,
    /// Frames rendered since the first vertebra mesh went on screen.
    pub frames_with_mesh: u32,
    /// Triangles of the current section (surface + cap).
    pub triangles: usize,
    pub cap_triangles: usize,
    /// Frame the camera on the model at the next update (set for a new model).
    reframe: bool,
    /// The side kept by the clip plane last frame (the camera follows a flip).
    kept_below: Option<bool>,
}

pub struct VertebraPlugin;

impl Plugin for VertebraPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Startup, setup_vertebra).add_systems(
            Update,
            (drag_clip_plane, update_vertebra, apply_view_visibility)
                .chain()
                .after(BridgeSet),
        );
    }
}

/// A hidden root and a hidden mesh entity under it, not frustum-culled: a section changes
/// shape with the clip plane, so culling against a stale bounding box would drop it.
pub(super) fn spawn_section_entities(commands: &mut Commands) -> (Entity, Entity) {
    let root = commands
        .spawn((Transform::default(), Visibility::Hidden))
        .id();
    let entity = commands
        .spawn((
            Transform::default(),
            Visibility::Hidden,
            NoFrustumCulling,
            ChildOf(root),
        ))
        .id();
    (root, entity)
}

fn setup_vertebra(mut commands: Commands) {
    let (root, entity) = spawn_section_entities(&mut commands);
    commands.insert_resource(VertebraView {
        root,
        entity,
        mesh: None,
        geometry: None,
        section: None,
        section_key: None,
        colour_key: None,
        field: Vec::new(),
        values: Vec::new(),
        field_day: None,
        frames_since_shown: 0,
        has_mesh: false,
        frames_with_mesh: 0,
        triangles: 0,
        cap_triangles: 0,
        reframe: false,
        kept_below: None,
    });
}

/// Keeps the vertebra section and colours in step with [`RemodelState`].
#[allow(clippy::too_many_arguments)]
fn update_vertebra(
    mut commands: Commands,
    mut view: ResMut<VertebraView>,
    mut state: ResMut<RemodelState>,
    scene: Res<SceneState>,
    active: Res<ViewKind>,
    layout: Res<ViewportLayout>,
    sim: Option<Res<Sim>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut transforms: Query<&mut Transform>,
    mut cameras: Query<&mut OrbitCamera, With<MainCamera>>,
    mut redraw: MessageWriter<RequestRedraw>,
) {
    view.frames_since_shown = view.frames_since_shown.saturating_add(1);
    if view.has_mesh {
        view.frames_with_mesh = view.frames_with_mesh.saturating_add(1);
    }
    if scene.quality == RenderQuality::Pending {
        return;
    }
    let Some(info) = state.info.clone() else {
        return;
    };
    // A new model: new geometry, the clip plane back to the mid-sagittal plane, reframe.
    let new_model = view
        .geometry
        .as_ref()
        .is_none_or(|g| !Arc::ptr_eq(g, &info.geometry));
    if new_model {
        view.geometry = Some(Arc::clone(&info.geometry));
        view.section_key = None;
        view.colour_key = None;
        view.reframe = true;
        state.clip_x_mm = Some(info.geometry.mid_sagittal_x_mm());
    }
    let geometry = Arc::clone(&info.geometry);
    // Flipping the kept half swings the camera to the other side, so the cut face stays in
    // view (the model is centred on x = 0 in the world).
    if view.kept_below.is_some_and(|k| k != state.keep_below) && *active == ViewKind::Vertebra {
        for mut orbit in &mut cameras {
            orbit.yaw = -orbit.yaw;
            orbit.target.x = -orbit.target.x;
        }
    }
    view.kept_below = Some(state.keep_below);

    let clip_x = state
        .clip_x_mm
        .unwrap_or_else(|| geometry.mid_sagittal_x_mm());
    let key = (state.clip_enabled, clip_x.to_bits(), state.keep_below);
    let mut geometry_changed = false;
    if view.section_key != Some(key) {
        let section = if state.clip_enabled {
            geometry.section(&ClipPlane {
                x_mm: clip_x,
                keep_below: state.keep_below,
            })
        } else {
            geometry.unclipped()
        };
        view.triangles = section.mesh.indices.len() / 3;
        view.cap_triangles = section.cap_triangles;
        view.section = Some(section);
        view.section_key = Some(key);
        geometry_changed = true;
    }

    // The field of the displayed day (or the nearest stored day below it).
    let run = info.run;
    let field = sim
        .as_ref()
        .and_then(|s| s.runner.field_history().field_at(run, state.shown_day));
    let scale = DivergingScale::new(state.range_min_pct, state.range_max_pct);
    let colour_key = field
        .as_ref()
        .map(|f| (run, f.day, scale.min.to_bits(), scale.max.to_bits()));
    if !geometry_changed && (colour_key.is_none() || colour_key == view.colour_key) {
        return;
    }
    let view = &mut *view;
    match &field {
        Some(f) => {
            view.field.clear();
            view.field
                .extend(f.centi_percent.iter().map(|&v| v as f32 * 0.01));
            view.field_day = Some(f.day);
        }
        None => {
            view.field.clear();
            view.field_day = None;
        }
    }
    view.colour_key = colour_key;
    let Some(section) = view.section.as_ref() else {
        return;
    };
    if section.mesh.indices.is_empty() {
        // The plane left nothing on the kept side.
        commands.entity(view.entity).insert(Visibility::Hidden);
        return;
    }
    if view.field.is_empty() {
        view.values.clear();
        view.values.resize(section.mesh.positions.len(), 0.0);
    } else {
        section.sampler.sample_into(&view.field, &mut view.values);
    }
    let mesh = to_bevy_mesh(section, &view.values, &scale);
    let handle = match &view.mesh {
        Some(h) => {
            // Same asset id: the entity keeps its handle, the render world re-uploads.
            if meshes.insert(h.id(), mesh).is_err() {
                warn!("vertebra mesh handle went stale; recreating it");
                view.mesh = None;
                return;
            }
            h.clone()
        }
        None => {
            let h = meshes.add(mesh);
            view.mesh = Some(h.clone());
            h
        }
    };
    let software = matches!(scene.quality, RenderQuality::Software { .. });
    let mut entity = commands.entity(view.entity);
    entity.insert((Mesh3d(handle), Visibility::Inherited));
    if software {
        entity
            .remove::<MeshMaterial3d<StandardMaterial>>()
            .insert(MeshMaterial3d(scene.headlight.clone()));
    } else {
        entity
            .remove::<MeshMaterial3d<super::scene::HeadlightMaterial>>()
            .insert(MeshMaterial3d(scene.pbr.clone()));
    }
    view.has_mesh = true;
    view.frames_since_shown = 0;
    redraw.write(RequestRedraw);

    if view.reframe {
        view.reframe = false;
        let (lo, hi) = geometry.bounds_mm;
        let (lo, hi) = (Vec3::from_array(lo), Vec3::from_array(hi));
        // z (cranio-caudal) up on screen, centred, diagonal scaled to MODEL_DIAGONAL_UNITS.
        let rotation = Quat::from_rotation_x(-std::f32::consts::FRAC_PI_2);
        let centre = (lo + hi) * 0.5;
        let s = MODEL_DIAGONAL_UNITS / (hi - lo).length().max(1e-6);
        if let Ok(mut t) = transforms.get_mut(view.root) {
            *t = Transform {
                translation: -(rotation * centre) * s,
                rotation,
                scale: Vec3::splat(s),
            };
        }
        if *active == ViewKind::Vertebra {
            for mut orbit in &mut cameras {
                *orbit = OrbitCamera::vertebra_default();
                orbit.frame_in(
                    MODEL_DIAGONAL_UNITS * 0.5,
                    super::camera::VERTEBRA_FILL,
                    &layout,
                );
            }
        }
    }
}

/// Shift + left-drag in the 3-D view moves the clip plane so that it follows the pointer.
#[allow(clippy::too_many_arguments)]
fn drag_clip_plane(
    active: Res<ViewKind>,
    buttons: Res<ButtonInput<MouseButton>>,
    keys: Res<ButtonInput<KeyCode>>,
    motion: Res<AccumulatedMouseMotion>,
    egui_input: Option<Res<EguiWantsInput>>,
    layout: Res<ViewportLayout>,
    mut state: ResMut<RemodelState>,
    view: Res<VertebraView>,
    cameras: Query<(&OrbitCamera, &Transform), With<MainCamera>>,
    transforms: Query<&Transform, Without<MainCamera>>,
) {
    if *active != ViewKind::Vertebra
        || !state.clip_enabled
        || motion.delta.x == 0.0
        || !buttons.pressed(MouseButton::Left)
        || !keys.any_pressed([KeyCode::ShiftLeft, KeyCode::ShiftRight])
        || egui_input.is_some_and(|e| e.wants_any_pointer_input())
    {
        return;
    }
    let (Some(geometry), Ok((orbit, camera)), Ok(root)) = (
        view.geometry.as_ref(),
        cameras.single(),
        transforms.get(view.root),
    ) else {
        return;
    };
    // World units per pixel at the target depth, then model mm along x (the model's x axis
    // is the world x axis, scaled by the root transform).
    let full_height = (layout.window.y + layout.bottom_panel).max(1.0);
    let world_per_px = 2.0 * orbit.distance * (0.5 * orbit.fov).tan() / full_height;
    let scale = root.scale.x.max(1e-6);
    let dx_mm = camera.right().x * motion.delta.x * world_per_px / scale;
    let (lo, hi) = geometry.x_range_mm();
    let x = state
        .clip_x_mm
        .unwrap_or_else(|| geometry.mid_sagittal_x_mm());
    state.clip_x_mm = Some((x + dx_mm).clamp(lo, hi));
}

/// Shows the model of the active view only.
pub(super) fn apply_view_visibility(
    active: Res<ViewKind>,
    view: Res<VertebraView>,
    scene: Res<SceneState>,
    mut visibility: Query<&mut Visibility>,
) {
    if !active.is_changed() && !view.is_added() {
        return;
    }
    let shown = |on: bool| {
        if on {
            Visibility::Inherited
        } else {
            Visibility::Hidden
        }
    };
    if let Ok(mut v) = visibility.get_mut(view.root) {
        *v = shown(*active == ViewKind::Vertebra);
    }
    if let Ok(mut v) = visibility.get_mut(scene.model_root) {
        *v = shown(*active == ViewKind::Micro);
    }
}

/// A Bevy mesh of the section with vertex colours from `values` through `scale`.
fn to_bevy_mesh(section: &SectionMesh, values: &[f32], scale: &DivergingScale) -> Mesh {
    let m = &section.mesh;
    let n = m.positions.len();
    let colors: Vec<[f32; 4]> = (0..n)
        .map(|i| {
            let v = values.get(i).copied().unwrap_or(f32::NAN);
            let c = if v.is_finite() {
                scale.srgb(v)
            } else {
                NO_DATA_SRGB
            };
            srgb_to_linear_rgba(c)
        })
        .collect();
    super::scene::colored_mesh(m, colors)
}
