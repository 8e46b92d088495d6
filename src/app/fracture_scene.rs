//! The fracture mode in the 3-D scene: the vertebra (sectioned by the vertebra view's clip
//! plane, so that the interior shows on the cap) or the trabecular core, coloured by the
//! element damage of the chosen specimen at the chosen curve point.
//!
//! The vertebra's damage fields arrive in its element order and go through the view
//! geometry's per-vertex sampler, like the BMD field of the remodeling view; the core's arrive
//! per vertex of its surface. While the fracture mode is shown, the remodeling view's vertebra
//! is hidden.

use std::sync::Arc;

use bevy::prelude::*;
use bevy::window::RequestRedraw;

use osteolab::mesh::SurfaceMesh;
use osteolab::runner::section::{ClipPlane, SectionMesh, VertebraGeometry};
use osteolab::runner::{JobId, Specimen};

use super::bridge::BridgeSet;
use super::fracture::{FractureState, VertebraMode};
use super::remodel::RemodelState;
use super::scene::{
    MODEL_DIAGONAL_UNITS, RenderQuality, SceneState, ViewKind, srgb_to_linear_rgba,
};
use super::vertebra::VertebraView;

/// Colour stops of the damage scale, from undamaged bone (0) to fully damaged (1), sRGB.
const DAMAGE_STOPS: [(f32, [f32; 3]); 5] = [
    (0.0, [0.87, 0.85, 0.79]),
    (0.2, [0.97, 0.83, 0.36]),
    (0.45, [0.97, 0.56, 0.16]),
    (0.7, [0.85, 0.20, 0.10]),
    (1.0, [0.42, 0.04, 0.10]),
];

/// Colour of vertices without a value (sRGB).
const NO_DATA_SRGB: [f32; 3] = [0.45, 0.45, 0.45];

/// The damage colour of `d` in [0, 1] (clamped), sRGB: ivory → yellow → orange → red →
/// dark red, lightness decreasing monotonically.
pub fn damage_srgb(d: f32) -> [f32; 3] {
    let d = if d.is_finite() {
        d.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let last = DAMAGE_STOPS[DAMAGE_STOPS.len() - 1];
    if d >= last.0 {
        return last.1;
    }
    for w in DAMAGE_STOPS.windows(2) {
        let ((t0, c0), (t1, c1)) = (w[0], w[1]);
        if d <= t1 {
            let t = (d - t0) / (t1 - t0);
            return [
                c0[0] + t * (c1[0] - c0[0]),
                c0[1] + t * (c1[1] - c0[1]),
                c0[2] + t * (c1[2] - c0[2]),
            ];
        }
    }
    last.1
}

/// What is on screen: the run, specimen and kept damage field (curve point), and the section.
type ShownKey = (JobId, usize, Option<usize>);

/// The fracture entities and what they show.
#[derive(Resource)]
pub struct FractureView {
    root: Entity,
    entity: Entity,
    mesh: Option<Handle<Mesh>>,
    core_root: Entity,
    core_entity: Entity,
    core_mesh: Option<Handle<Mesh>>,
    geometry: Option<Arc<VertebraGeometry>>,
    core_surface: Option<Arc<SurfaceMesh>>,
    section: Option<SectionMesh>,
    section_key: Option<(bool, u32, bool)>,
    shown_key: Option<ShownKey>,
    values: Vec<f32>,
    /// The curve point of the damage field on screen (`None`: undamaged, the curve is not
    /// done yet).
    pub field_point: Option<usize>,
    /// The specimen on screen.
    pub shown_specimen: Option<usize>,
    /// Frames rendered since the mesh last changed.
    pub frames_since_shown: u32,
}

pub struct FractureScenePlugin;

impl Plugin for FractureScenePlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Startup, setup).add_systems(
            Update,
            update_fracture_view
                .after(BridgeSet)
                .after(super::vertebra::apply_view_visibility),
        );
    }
}

fn setup(mut commands: Commands) {
    let (root, entity) = super::vertebra::spawn_section_entities(&mut commands);
    let (core_root, core_entity) = super::vertebra::spawn_section_entities(&mut commands);
    commands.insert_resource(FractureView {
        root,
        entity,
        mesh: None,
        core_root,
        core_entity,
        core_mesh: None,
        geometry: None,
        core_surface: None,
        section: None,
        section_key: None,
        shown_key: None,
        values: Vec::new(),
        field_point: None,
        shown_specimen: None,
        frames_since_shown: 0,
    });
}

fn set_visible(visibility: &mut Query<&mut Visibility>, entity: Entity, on: bool) {
    if let Ok(mut v) = visibility.get_mut(entity) {
        v.set_if_neq(if on {
            Visibility::Inherited
        } else {
            Visibility::Hidden
        });
    }
}

/// The root transform that puts a model with bounds `(lo, hi)` (mm) z-up, centred, with its
/// diagonal scaled to [`MODEL_DIAGONAL_UNITS`]: the vertebra view's framing.
fn framing(lo: [f32; 3], hi: [f32; 3]) -> Transform {
    let (lo, hi) = (Vec3::from_array(lo), Vec3::from_array(hi));
    let rotation = Quat::from_rotation_x(-std::f32::consts::FRAC_PI_2);
    let centre = (lo + hi) * 0.5;
    let s = MODEL_DIAGONAL_UNITS / (hi - lo).length().max(1e-6);
    Transform {
        translation: -(rotation * centre) * s,
        rotation,
        scale: Vec3::splat(s),
    }
}

/// Keeps the fracture entities in step with [`FractureState`] and the clip plane of
/// [`RemodelState`].
#[allow(clippy::too_many_arguments)]
fn update_fracture_view(
    mut commands: Commands,
    mut view: ResMut<FractureView>,
    state: Res<FractureState>,
    remodel: Res<RemodelState>,
    vertebra: Res<VertebraView>,
    scene: Res<SceneState>,
    active: Res<ViewKind>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut visibility: Query<&mut Visibility>,
    mut transforms: Query<&mut Transform>,
    mut redraw: MessageWriter<RequestRedraw>,
) {
    view.frames_since_shown = view.frames_since_shown.saturating_add(1);
    let vertebra_view = *active == ViewKind::Vertebra;
    let fracture_mode = vertebra_view && state.mode == VertebraMode::Fracture;
    set_visible(
        &mut visibility,
        vertebra.root,
        vertebra_view && !fracture_mode,
    );
    let info = state.info.clone().filter(|_| fracture_mode);
    let selected = info
        .as_ref()
        .and_then(|i| i.specimens.get(state.selected).map(|s| s.specimen));
    set_visible(
        &mut visibility,
        view.root,
        matches!(selected, Some(Specimen::State(_))),
    );
    set_visible(
        &mut visibility,
        view.core_root,
        selected == Some(Specimen::Core),
    );
    let (Some(info), Some(specimen)) = (info, selected) else {
        return;
    };
    if scene.quality == RenderQuality::Pending {
        return;
    }
    let snapshot = state
        .result(state.selected)
        .and_then(|r| r.damage_at(state.point).cloned());
    let key: ShownKey = (info.run, state.selected, snapshot.as_ref().map(|s| s.point));
    let view = &mut *view;

    let mesh = match specimen {
        Specimen::State(_) => {
            if view
                .geometry
                .as_ref()
                .is_none_or(|g| !Arc::ptr_eq(g, &info.geometry))
            {
                view.geometry = Some(Arc::clone(&info.geometry));
                view.section_key = None;
                view.shown_key = None;
                let (lo, hi) = info.geometry.bounds_mm;
                if let Ok(mut t) = transforms.get_mut(view.root) {
                    *t = framing(lo, hi);
                }
            }
            let geometry = &info.geometry;
            let clip_x = remodel
                .clip_x_mm
                .unwrap_or_else(|| geometry.mid_sagittal_x_mm());
            let section_key = (remodel.clip_enabled, clip_x.to_bits(), remodel.keep_below);
            let section_changed = view.section_key != Some(section_key);
            if section_changed {
                view.section = Some(if remodel.clip_enabled {
                    geometry.section(&ClipPlane {
                        x_mm: clip_x,
                        keep_below: remodel.keep_below,
                    })
                } else {
                    geometry.unclipped()
                });
                view.section_key = Some(section_key);
            }
            if !section_changed && view.shown_key == Some(key) {
                return;
            }
            let Some(section) = view.section.as_ref() else {
                return;
            };
            match &snapshot {
                Some(s) => section.sampler.sample_into(&s.damage, &mut view.values),
                None => {
                    view.values.clear();
                    view.values.resize(section.mesh.positions.len(), 0.0);
                }
            }
            if section.mesh.indices.is_empty() {
                return;
            }
            damage_mesh(&section.mesh, &view.values)
        }
        Specimen::Core => {
            let Some(core) = info.core.as_ref() else {
                return;
            };
            if view
                .core_surface
                .as_ref()
                .is_none_or(|s| !Arc::ptr_eq(s, &core.surface))
            {
                view.core_surface = Some(Arc::clone(&core.surface));
                view.shown_key = None;
                if let (Some((lo, hi)), Ok(mut t)) = (
                    core.surface.bounding_box(),
                    transforms.get_mut(view.core_root),
                ) {
                    *t = framing(lo, hi);
                }
            }
            if view.shown_key == Some(key) || core.surface.is_empty() {
                return;
            }
            let values = match &snapshot {
                Some(s) => s.damage.clone(),
                None => vec![0.0; core.surface.positions.len()],
            };
            damage_mesh(&core.surface, &values)
        }
    };
    let (entity, slot) = match specimen {
        Specimen::State(_) => (view.entity, &mut view.mesh),
        Specimen::Core => (view.core_entity, &mut view.core_mesh),
    };
    let handle = match slot {
        Some(h) => {
            // Same asset id: the entity keeps its handle, the render world re-uploads.
            if meshes.insert(h.id(), mesh).is_err() {
                warn!("fracture mesh handle went stale; recreating it");
                *slot = None;
                return;
            }
            h.clone()
        }
        None => {
            let h = meshes.add(mesh);
            *slot = Some(h.clone());
            h
        }
    };
    let software = matches!(scene.quality, RenderQuality::Software { .. });
    let mut e = commands.entity(entity);
    e.insert((Mesh3d(handle), Visibility::Inherited));
    if software {
        e.remove::<MeshMaterial3d<StandardMaterial>>()
            .insert(MeshMaterial3d(scene.headlight.clone()));
    } else {
        e.remove::<MeshMaterial3d<super::scene::HeadlightMaterial>>()
            .insert(MeshMaterial3d(scene.pbr.clone()));
    }
    view.shown_key = Some(key);
    view.field_point = snapshot.map(|s| s.point);
    view.shown_specimen = Some(state.selected);
    view.frames_since_shown = 0;
    redraw.write(RequestRedraw);
}

/// A Bevy mesh of `surface` coloured by per-vertex damage `values`.
fn damage_mesh(surface: &SurfaceMesh, values: &[f32]) -> Mesh {
    let colors = (0..surface.positions.len())
        .map(|i| {
            let v = values.get(i).copied().unwrap_or(f32::NAN);
            srgb_to_linear_rgba(if v.is_finite() {
                damage_srgb(v)
            } else {
                NO_DATA_SRGB
            })
        })
        .collect();
    super::scene::colored_mesh(surface, colors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative luminance (Rec. 709 weights on sRGB, enough to order the stops).
    fn lightness(c: [f32; 3]) -> f32 {
        0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
    }

    #[test]
    fn damage_colours_darken_monotonically_from_bone_to_dark_red() {
        assert_eq!(damage_srgb(0.0), DAMAGE_STOPS[0].1);
        assert_eq!(damage_srgb(1.0), DAMAGE_STOPS[4].1);
        assert_eq!(damage_srgb(2.0), damage_srgb(1.0), "clamped above");
        assert_eq!(damage_srgb(-1.0), damage_srgb(0.0), "clamped below");
        assert_eq!(damage_srgb(f32::NAN), damage_srgb(0.0));
        let mut last = f32::INFINITY;
        for i in 0..=100 {
            let l = lightness(damage_srgb(i as f32 / 100.0));
            assert!(
                l <= last + 1e-6,
                "lightness rises at d = {}",
                i as f32 / 100.0
            );
            last = l;
        }
    }
}
