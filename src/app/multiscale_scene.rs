//! The 3-D scene of the multiscale mode: the structures of the run side by side along x (day 0,
//! the least-bone checkpoint, the latest one; or the latest one alone), each drawn as its bone
//! surface coloured by change against day 0 (unchanged bone in the usual bone colour, bone
//! formed since day 0 in green) and, around it, a translucent orange-red shell of the bone
//! resorbed since day 0 (bone in the original, marrow now).
//!
//! The meshes are rebuilt only when the runner publishes new structures (one snapshot per
//! checkpoint) or the layout changes. The micro view's compare surfaces (`scene`) are hidden
//! while this mode is shown, and these while it is not.

use std::sync::Arc;

use bevy::asset::uuid_handle;
use bevy::prelude::*;
use bevy::render::render_resource::AsBindGroup;
use bevy::shader::ShaderRef;

use osteolab::mesh::SurfaceMesh;
use osteolab::multiscale::Checkpoint;
use osteolab::runner::{MultiscaleSnapshot, StructureView};

use super::bridge::BridgeSet;
use super::camera::OrbitCamera;
use super::multiscale::{Layout, MicroMode, MultiscaleState};
use super::scene::{
    MODEL_DIAGONAL_UNITS, MainCamera, RenderQuality, SceneState, ViewKind, ViewportLayout,
    srgb_to_linear_rgba,
};

/// Unchanged bone (sRGB): the ivory of the micro view.
pub const BONE_SRGB: [f32; 3] = [0.87, 0.83, 0.74];
/// Bone formed since day 0 (sRGB).
pub const FORMED_SRGB: [f32; 3] = [0.25, 0.78, 0.35];
/// Bone resorbed since day 0 (sRGB) and the shell's opacity.
pub const REMOVED_SRGB: [f32; 3] = [1.0, 0.36, 0.16];
pub const REMOVED_ALPHA: f32 = 0.42;

/// Gap between neighbouring structures, as a fraction of the widest.
const GAP_FRACTION: f32 = 0.35;

const GHOST_SHADER: Handle<Shader> = uuid_handle!("0b0f6d7e-52a4-4c1e-9e0f-3c1b7a5d2e90");

/// Translucent vertex-colour material of the resorbed bone (see `ghost.wgsl`).
#[derive(Asset, TypePath, AsBindGroup, Debug, Clone, Default)]
pub struct GhostMaterial {}

impl Material for GhostMaterial {
    fn fragment_shader() -> ShaderRef {
        ShaderRef::Handle(GHOST_SHADER)
    }
    fn alpha_mode(&self) -> AlphaMode {
        AlphaMode::Blend
    }
    fn enable_prepass() -> bool {
        false
    }
    fn enable_shadows() -> bool {
        false
    }
}

/// Which structure of the run a displayed one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Day 0.
    Original,
    /// The checkpoint with the least bone (while bone is still being lost, the latest one).
    Lowest,
    /// The latest checkpoint.
    Latest,
}

/// One displayed structure: its role(s), record and where the overlay labels it.
#[derive(Clone, Debug)]
pub struct Shown {
    pub role: Role,
    /// The latest checkpoint is also the one with the least bone so far.
    pub also_lowest: bool,
    pub checkpoint: Checkpoint,
    /// World position just above the structure.
    pub anchor: Vec3,
    pub bone_triangles: usize,
    pub removed_triangles: usize,
    pub mesh_step: usize,
}

/// The entities of one displayed structure.
struct Pair {
    bone: Entity,
    removed: Entity,
    meshes: Vec<Handle<Mesh>>,
}

#[derive(Resource)]
pub struct MultiscaleView {
    root: Entity,
    pairs: [Pair; 3],
    ghost: Handle<GhostMaterial>,
    /// What the meshes were built from.
    built: Option<(Arc<MultiscaleSnapshot>, Layout, bool)>,
    /// What is displayed, left to right.
    pub shown: Vec<Shown>,
    /// Frames rendered since the meshes were last rebuilt.
    pub frames_since_shown: u32,
    /// Frame the camera at the next rebuild.
    reframe: bool,
}

pub struct MultiscaleScenePlugin;

impl Plugin for MultiscaleScenePlugin {
    fn build(&self, app: &mut App) {
        app.world_mut()
            .resource_mut::<Assets<Shader>>()
            .insert(
                GHOST_SHADER.id(),
                Shader::from_wgsl(include_str!("ghost.wgsl"), "osteolab/app/ghost.wgsl"),
            )
            .expect("the ghost shader handle is a fixed UUID and cannot be stale");
        app.add_plugins(MaterialPlugin::<GhostMaterial>::default())
            .add_systems(Startup, setup)
            .add_systems(
                Update,
                (apply_visibility, update_structures)
                    .chain()
                    .after(BridgeSet),
            );
    }
}

fn setup(mut commands: Commands, mut ghosts: ResMut<Assets<GhostMaterial>>) {
    let root = commands
        .spawn((Transform::default(), Visibility::Hidden))
        .id();
    let mut pair = || {
        let mut child = || {
            commands
                .spawn((Transform::default(), Visibility::Hidden, ChildOf(root)))
                .id()
        };
        Pair {
            bone: child(),
            removed: child(),
            meshes: Vec::new(),
        }
    };
    let pairs = [pair(), pair(), pair()];
    commands.insert_resource(MultiscaleView {
        root,
        pairs,
        ghost: ghosts.add(GhostMaterial::default()),
        built: None,
        shown: Vec::new(),
        frames_since_shown: 0,
        reframe: true,
    });
}

/// Shows these structures in the multiscale mode of the micro view and the compare surfaces
/// in its compare mode.
fn apply_visibility(
    active: Res<ViewKind>,
    state: Res<MultiscaleState>,
    scene: Res<SceneState>,
    mut view: ResMut<MultiscaleView>,
    mut visibility: Query<&mut Visibility>,
    mut last_mode: Local<Option<MicroMode>>,
) {
    let micro = *active == ViewKind::Micro;
    let multiscale = micro && state.mode == MicroMode::Multiscale;
    let compare = micro && state.mode == MicroMode::Compare;
    let on = |b: bool| {
        if b {
            Visibility::Inherited
        } else {
            Visibility::Hidden
        }
    };
    if let Ok(mut v) = visibility.get_mut(view.root) {
        v.set_if_neq(on(multiscale));
    }
    if micro && let Ok(mut v) = visibility.get_mut(scene.model_root) {
        v.set_if_neq(on(compare));
    }
    // Entering the multiscale mode frames its structures again.
    if last_mode.replace(state.mode) != Some(state.mode) && state.mode == MicroMode::Multiscale {
        view.reframe = true;
        view.built = None;
    }
}

/// The structures to display for `layout`, left to right.
fn entries(snapshot: &MultiscaleSnapshot, layout: Layout) -> Vec<(Role, bool, &StructureView)> {
    let latest_is_lowest = Arc::ptr_eq(&snapshot.latest, &snapshot.lowest);
    let latest_is_original = Arc::ptr_eq(&snapshot.latest, &snapshot.original);
    match layout {
        Layout::Latest => vec![(Role::Latest, latest_is_lowest, &snapshot.latest)],
        Layout::SideBySide => {
            let mut out = vec![(Role::Original, false, &*snapshot.original)];
            if !Arc::ptr_eq(&snapshot.lowest, &snapshot.original) && !latest_is_lowest {
                out.push((Role::Lowest, false, &snapshot.lowest));
            }
            if !latest_is_original {
                out.push((Role::Latest, latest_is_lowest, &snapshot.latest));
            }
            out
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn update_structures(
    mut commands: Commands,
    state: Res<MultiscaleState>,
    scene: Res<SceneState>,
    mut view: ResMut<MultiscaleView>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut transforms: Query<&mut Transform>,
    mut cameras: Query<&mut OrbitCamera, With<MainCamera>>,
    active: Res<ViewKind>,
    layout: Res<ViewportLayout>,
) {
    view.frames_since_shown = view.frames_since_shown.saturating_add(1);
    let software = match scene.quality {
        RenderQuality::Pending => return,
        RenderQuality::Software { .. } => true,
        RenderQuality::Gpu { .. } => false,
    };
    let Some(snapshot) = state.snapshot.clone() else {
        return;
    };
    let up_to_date = view.built.as_ref().is_some_and(|(s, l, sw)| {
        Arc::ptr_eq(s, &snapshot) && *l == state.layout && *sw == software
    });
    if up_to_date {
        return;
    }
    let count_before = view.shown.len();
    let list = entries(&snapshot, state.layout);

    // Boxes (model mm) and offsets along x, the row centred at the origin.
    let boxes: Vec<(Vec3, Vec3)> = list
        .iter()
        .map(|(_, _, s)| bounds(&s.surface).unwrap_or((Vec3::ZERO, Vec3::ZERO)))
        .collect();
    let widest = boxes.iter().map(|(lo, hi)| hi.x - lo.x).fold(0.0, f32::max);
    let gap = GAP_FRACTION * widest;
    let total: f32 =
        boxes.iter().map(|(lo, hi)| hi.x - lo.x).sum::<f32>() + gap * (boxes.len() as f32 - 1.0);
    let mut x = -0.5 * total;
    let mut offsets = Vec::with_capacity(boxes.len());
    for (lo, hi) in &boxes {
        let w = hi.x - lo.x;
        let centre = (*lo + *hi) * 0.5;
        offsets.push(Vec3::new(x + 0.5 * w, 0.0, 0.0) - centre);
        x += w + gap;
    }
    let (lo, hi) = boxes
        .iter()
        .zip(&offsets)
        .map(|((a, b), o)| (*a + *o, *b + *o))
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
        .unwrap_or((Vec3::ZERO, Vec3::ONE));
    // z (the loading axis) up on screen, the row's diagonal scaled to MODEL_DIAGONAL_UNITS.
    let rotation = Quat::from_rotation_x(-std::f32::consts::FRAC_PI_2);
    let s = MODEL_DIAGONAL_UNITS / (hi - lo).length().max(1e-6);
    let root = Transform {
        translation: Vec3::ZERO,
        rotation,
        scale: Vec3::splat(s),
    };
    if let Ok(mut t) = transforms.get_mut(view.root) {
        *t = root;
    }

    let ghost = view.ghost.clone();
    let mut shown = Vec::with_capacity(list.len());
    for (i, pair) in view.pairs.iter_mut().enumerate() {
        for old in pair.meshes.drain(..) {
            meshes.remove(&old);
        }
        let Some(&(role, also_lowest, structure)) = list.get(i) else {
            commands.entity(pair.bone).insert(Visibility::Hidden);
            commands.entity(pair.removed).insert(Visibility::Hidden);
            continue;
        };
        let offset = offsets[i];
        let bone = meshes.add(bone_mesh(&structure.surface));
        pair.meshes.push(bone.clone());
        let mut entity = commands.entity(pair.bone);
        entity.insert((
            Mesh3d(bone),
            Visibility::Inherited,
            Transform::from_translation(offset),
        ));
        if software {
            entity
                .remove::<MeshMaterial3d<StandardMaterial>>()
                .insert(MeshMaterial3d(scene.headlight.clone()));
        } else {
            entity
                .remove::<MeshMaterial3d<super::scene::HeadlightMaterial>>()
                .insert(MeshMaterial3d(scene.pbr.clone()));
        }
        if structure.removed.is_empty() {
            commands.entity(pair.removed).insert(Visibility::Hidden);
        } else {
            let removed = meshes.add(removed_mesh(&structure.removed));
            pair.meshes.push(removed.clone());
            commands.entity(pair.removed).insert((
                Mesh3d(removed),
                MeshMaterial3d(ghost.clone()),
                Visibility::Inherited,
                Transform::from_translation(offset),
            ));
        }
        let (a, b) = boxes[i];
        let top = Vec3::new(
            0.5 * (a.x + b.x),
            0.5 * (a.y + b.y),
            b.z + 0.04 * (b.z - a.z),
        );
        shown.push(Shown {
            role,
            also_lowest,
            checkpoint: structure.checkpoint.clone(),
            anchor: root.transform_point(top + offset),
            bone_triangles: structure.surface.triangle_count(),
            removed_triangles: structure.removed.triangle_count(),
            mesh_step: structure.mesh_step,
        });
    }
    view.shown = shown;
    view.frames_since_shown = 0;
    view.built = Some((snapshot, state.layout, software));
    if (view.reframe || view.shown.len() != count_before) && *active == ViewKind::Micro {
        view.reframe = false;
        let n = view.shown.len();
        for mut orbit in &mut cameras {
            *orbit = OrbitCamera {
                yaw: 0.22,
                pitch: 0.28,
                ..OrbitCamera::default()
            };
            // A row of n cubes: its bounding sphere overstates the height on screen the more
            // the longer the row is.
            let fill = match n {
                1 => super::camera::MICRO_FILL,
                2 => super::camera::MICRO_PAIR_FILL,
                _ => 1.45,
            };
            orbit.frame_in(MODEL_DIAGONAL_UNITS * 0.5, fill, &layout);
        }
    }
}

fn bounds(mesh: &SurfaceMesh) -> Option<(Vec3, Vec3)> {
    let (lo, hi) = mesh.bounding_box()?;
    Some((Vec3::from_array(lo), Vec3::from_array(hi)))
}

/// The colour of a bone vertex with formed fraction `formed`: the bone colour blended to green
/// (a vertex half surrounded by new bone is mostly green).
fn change_colour(formed: f32) -> [f32; 3] {
    let t = if formed.is_finite() {
        (formed * 2.0).clamp(0.0, 1.0)
    } else {
        0.0
    };
    std::array::from_fn(|k| BONE_SRGB[k] + t * (FORMED_SRGB[k] - BONE_SRGB[k]))
}

/// The bone surface with linear-RGB vertex colours by change.
fn bone_mesh(surface: &SurfaceMesh) -> Mesh {
    let n = surface.positions.len();
    let colors = match surface.scalar(osteolab::runner::multiscale::CHANGE_FIELD) {
        Some(formed) if formed.len() == n => formed
            .iter()
            .map(|&f| srgb_to_linear_rgba(change_colour(f)))
            .collect(),
        _ => vec![srgb_to_linear_rgba(BONE_SRGB); n],
    };
    super::scene::colored_mesh(surface, colors)
}

/// The resorbed bone's surface, one translucent colour.
fn removed_mesh(surface: &SurfaceMesh) -> Mesh {
    let mut c = srgb_to_linear_rgba(REMOVED_SRGB);
    c[3] = REMOVED_ALPHA;
    super::scene::colored_mesh(surface, vec![c; surface.positions.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_colour_runs_from_bone_to_green_and_treats_nan_as_unchanged() {
        let close = |a: [f32; 3], b: [f32; 3]| (0..3).all(|k| (a[k] - b[k]).abs() < 1e-6);
        assert!(close(change_colour(0.0), BONE_SRGB));
        assert!(close(change_colour(f32::NAN), BONE_SRGB));
        // Half surrounded by new bone reads as new bone, and beyond stays there.
        assert!(close(change_colour(0.5), FORMED_SRGB));
        assert!(close(change_colour(1.0), FORMED_SRGB));
        let halfway = std::array::from_fn(|k| 0.5 * (BONE_SRGB[k] + FORMED_SRGB[k]));
        assert!(close(change_colour(0.25), halfway));
    }
}
