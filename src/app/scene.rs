//! The 3-D scene: render-quality choice (software vs GPU), the two microstructure surfaces
//! (real and generated, side by side along x), their materials, and the conversion from the
//! core's `SurfaceMesh` to a `bevy::Mesh`.

use std::sync::Arc;

use bevy::asset::{RenderAssetUsages, uuid_handle};
use bevy::core_pipeline::tonemapping::Tonemapping;
use bevy::mesh::{Indices, PrimitiveTopology};
use bevy::prelude::*;
use bevy::render::render_resource::AsBindGroup;
use bevy::render::renderer::RenderAdapterInfo;
use bevy::shader::ShaderRef;

use osteolab::mesh::SurfaceMesh;
use osteolab::runner::{MicroSlot, PerSlot, SED_FIELD, Snapshot};

use super::camera::OrbitCamera;
use super::colormap::{ColorScale, ScaleKind, viridis_srgb};

/// Colour of bone before any field is shown (sRGB, a light ivory).
const BONE_SRGB: [f32; 3] = [0.87, 0.83, 0.74];

/// The scene is scaled so the model's bounding-box diagonal is this many world units.
pub const MODEL_DIAGONAL_UNITS: f32 = 10.0;

/// Gap between the real and the generated cube, as a fraction of the larger cube's width.
const PAIR_GAP_FRACTION: f32 = 0.3;

/// Which model the 3-D view and the panels show.
#[derive(Resource, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ViewKind {
    /// The macroscale vertebra and its remodeling run.
    #[default]
    Vertebra,
    /// The trabecular microstructure and its micro-FE solve.
    Micro,
}

impl ViewKind {
    pub fn label(self) -> &'static str {
        match self {
            ViewKind::Vertebra => "Vertebra",
            ViewKind::Micro => "Microstructure",
        }
    }
}

/// Where the 3-D view is visible in the window (logical pixels): the window minus the left
/// panel and the bottom timeline. Updated by the UI every frame, used to frame the camera.
#[derive(Resource, Clone, Copy, Debug, PartialEq)]
pub struct ViewportLayout {
    pub window: Vec2,
    pub left_panel: f32,
    pub bottom_panel: f32,
}

impl Default for ViewportLayout {
    fn default() -> Self {
        Self {
            window: Vec2::new(1280.0, 768.0),
            left_panel: 340.0,
            bottom_panel: 0.0,
        }
    }
}

const HEADLIGHT_SHADER: Handle<Shader> = uuid_handle!("6c1f0b8e-3d52-4f4c-9a57-1d0b6f0e8a11");

/// Lit vertex-colour material for software rasterisers (see `headlight.wgsl`).
#[derive(Asset, TypePath, AsBindGroup, Debug, Clone, Default)]
pub struct HeadlightMaterial {}

impl Material for HeadlightMaterial {
    fn fragment_shader() -> ShaderRef {
        ShaderRef::Handle(HEADLIGHT_SHADER)
    }
    fn enable_prepass() -> bool {
        false
    }
    fn enable_shadows() -> bool {
        false
    }
}

/// Which rendering path is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderQuality {
    /// Adapter not known yet (render resources are created asynchronously).
    Pending,
    /// CPU rasteriser: MSAA off, cheap headlight material.
    Software { adapter: String },
    /// Hardware GPU: PBR StandardMaterial, MSAA 4×.
    Gpu { adapter: String },
}

impl RenderQuality {
    pub fn label(&self) -> String {
        match self {
            RenderQuality::Pending => "renderer: starting…".into(),
            RenderQuality::Software { adapter } => {
                format!("{adapter} (software): fast shading, MSAA off")
            }
            RenderQuality::Gpu { adapter } => format!("{adapter}: PBR, MSAA 4×"),
        }
    }
}

#[derive(Resource)]
pub struct SceneState {
    pub quality: RenderQuality,
    pub scale_kind: ScaleKind,
    /// The colour scale in use (after a solve), common to both structures, for the colour bar.
    pub color_scale: Option<ColorScale>,
    /// The snapshot currently displayed (both slots).
    pub shown: Option<Arc<Snapshot>>,
    /// World position just above each displayed structure, where the overlay labels it.
    pub label_anchors: PerSlot<Option<Vec3>>,
    /// Set when the mesh must be rebuilt (new snapshot, scale change, quality decided).
    pub dirty: bool,
    /// Set when the camera should frame a newly loaded model.
    pub reframe: bool,
    /// Frames rendered since the current snapshot was put on screen.
    pub frames_since_shown: u32,
    /// Parent of the microstructure surfaces (hidden in the vertebra view).
    pub model_root: Entity,
    surfaces: PerSlot<SlotSurface>,
    /// Material of the PBR (GPU) path, shared with the vertebra view.
    pub pbr: Handle<StandardMaterial>,
    /// Material of the software path, shared with the vertebra view.
    pub headlight: Handle<HeadlightMaterial>,
}

/// The entity drawing one slot's surface and its current mesh.
struct SlotSurface {
    entity: Entity,
    mesh: Option<Handle<Mesh>>,
}

#[derive(Component)]
pub struct MainCamera;

pub struct ScenePlugin;

impl Plugin for ScenePlugin {
    fn build(&self, app: &mut App) {
        app.world_mut()
            .resource_mut::<Assets<Shader>>()
            .insert(
                HEADLIGHT_SHADER.id(),
                Shader::from_wgsl(
                    include_str!("headlight.wgsl"),
                    "osteolab/app/headlight.wgsl",
                ),
            )
            .expect("the headlight shader handle is a fixed UUID and cannot be stale");
        app.add_plugins(MaterialPlugin::<HeadlightMaterial>::default())
            .init_resource::<ViewportLayout>()
            .add_systems(Startup, setup_scene)
            .add_systems(Update, (detect_render_quality, update_surface).chain());
    }
}

fn setup_scene(
    mut commands: Commands,
    mut pbr_materials: ResMut<Assets<StandardMaterial>>,
    mut headlight_materials: ResMut<Assets<HeadlightMaterial>>,
) {
    commands.insert_resource(ClearColor(Color::srgb(0.11, 0.12, 0.14)));
    commands.insert_resource(GlobalAmbientLight {
        color: Color::WHITE,
        brightness: 250.0,
        ..default()
    });
    // Camera: MSAA off until the adapter is known (a software adapter keeps it off).
    commands
        .spawn((
            MainCamera,
            Camera3d::default(),
            Msaa::Off,
            // Scientific colour maps must not be tone-mapped.
            Tonemapping::None,
            OrbitCamera::default(),
            Transform::from_xyz(0.0, 0.0, 20.0).looking_at(Vec3::ZERO, Vec3::Y),
        ))
        .with_children(|c| {
            // Headlight for the PBR path, slightly above and left of the eye.
            c.spawn((
                DirectionalLight {
                    illuminance: 6_000.0,
                    shadow_maps_enabled: false,
                    ..default()
                },
                Transform::from_xyz(-0.3, 0.5, 1.0).looking_at(Vec3::ZERO, Vec3::Y),
            ));
        });
    // Hidden until the micro view is chosen (see vertebra::apply_view_visibility).
    let model_root = commands
        .spawn((Transform::default(), Visibility::Hidden))
        .id();
    let mut surface = || SlotSurface {
        entity: commands
            .spawn((
                Transform::default(),
                Visibility::Hidden,
                ChildOf(model_root),
            ))
            .id(),
        mesh: None,
    };
    let surfaces = PerSlot {
        real: surface(),
        generated: surface(),
    };
    let pbr = pbr_materials.add(StandardMaterial {
        base_color: Color::WHITE,
        perceptual_roughness: 0.55,
        reflectance: 0.3,
        double_sided: true,
        cull_mode: None,
        ..default()
    });
    let headlight = headlight_materials.add(HeadlightMaterial::default());
    commands.insert_resource(SceneState {
        quality: RenderQuality::Pending,
        scale_kind: ScaleKind::Log,
        color_scale: None,
        shown: None,
        label_anchors: PerSlot::default(),
        dirty: false,
        reframe: false,
        frames_since_shown: 0,
        model_root,
        surfaces,
        pbr,
        headlight,
    });
}

/// Picks the rendering path once the render adapter is known. `OSTEOLAB_RENDER=software|gpu`
/// overrides the detection.
fn detect_render_quality(
    adapter: Option<Res<RenderAdapterInfo>>,
    mut scene: ResMut<SceneState>,
    mut cameras: Query<&mut Msaa, With<MainCamera>>,
) {
    if scene.quality != RenderQuality::Pending {
        return;
    }
    let Some(adapter) = adapter else {
        return;
    };
    let info = &adapter.0;
    let name = info.name.clone();
    // wgpu's DeviceType is not re-exported by Bevy; its Debug name is stable ("Cpu").
    let detected_cpu = format!("{:?}", info.device_type) == "Cpu"
        || ["llvmpipe", "lavapipe", "swiftshader", "softpipe"]
            .iter()
            .any(|s| name.to_lowercase().contains(s));
    let software = match std::env::var("OSTEOLAB_RENDER").as_deref() {
        Ok("software") => true,
        Ok("gpu") => false,
        _ => detected_cpu,
    };
    scene.quality = if software {
        RenderQuality::Software { adapter: name }
    } else {
        RenderQuality::Gpu { adapter: name }
    };
    info!("render path: {}", scene.quality.label());
    for mut msaa in &mut cameras {
        *msaa = if software { Msaa::Off } else { Msaa::Sample4 };
    }
    scene.dirty = true;
}

/// Rebuilds the surface meshes when the shown snapshot or the colour scale changed: both
/// structures share one SED colour scale (so their colours compare), the real one sits on the
/// left and the generated one on the right, with a gap.
fn update_surface(
    mut commands: Commands,
    mut scene: ResMut<SceneState>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut transforms: Query<&mut Transform>,
    mut cameras: Query<&mut OrbitCamera, With<MainCamera>>,
    active: Res<ViewKind>,
    layout: Res<ViewportLayout>,
) {
    scene.frames_since_shown = scene.frames_since_shown.saturating_add(1);
    if !scene.dirty || scene.quality == RenderQuality::Pending {
        return;
    }
    scene.dirty = false;
    let Some(snapshot) = scene.shown.clone() else {
        return;
    };
    let all_sed: Vec<f32> = MicroSlot::ALL
        .iter()
        .filter_map(|&slot| snapshot.get(slot)?.field(SED_FIELD))
        .flatten()
        .copied()
        .collect();
    let scale = (!all_sed.is_empty()).then(|| ColorScale::robust(scene.scale_kind, &all_sed));
    scene.color_scale = scale;
    let software = matches!(scene.quality, RenderQuality::Software { .. });
    let offsets = pair_offsets(&snapshot);
    let mut combined: Option<(Vec3, Vec3)> = None;
    for slot in MicroSlot::ALL {
        let entity = scene.surfaces.get(slot).entity;
        let Some(shown) = snapshot.get(slot) else {
            commands.entity(entity).insert(Visibility::Hidden);
            if let Some(old) = scene.surfaces.get_mut(slot).mesh.take() {
                meshes.remove(&old);
            }
            continue;
        };
        let field = shown.field(SED_FIELD);
        let handle = meshes.add(to_bevy_mesh(&shown.mesh, field.zip(scale)));
        if let Some(old) = scene.surfaces.get_mut(slot).mesh.replace(handle.clone()) {
            meshes.remove(&old);
        }
        let offset = *offsets.get(slot);
        let mut surface = commands.entity(entity);
        surface.insert((
            Mesh3d(handle),
            Visibility::Inherited,
            Transform::from_translation(offset),
        ));
        if software {
            surface
                .remove::<MeshMaterial3d<StandardMaterial>>()
                .insert(MeshMaterial3d(scene.headlight.clone()));
        } else {
            surface
                .remove::<MeshMaterial3d<HeadlightMaterial>>()
                .insert(MeshMaterial3d(scene.pbr.clone()));
        }
        if let Some((lo, hi)) = bounds(&shown.mesh) {
            let (lo, hi) = (lo + offset, hi + offset);
            combined = Some(match combined {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
        }
    }
    scene.frames_since_shown = 0;

    let Some((lo, hi)) = combined else {
        return;
    };
    // z (the loading axis) up on screen, the pair centred at the origin, its diagonal scaled
    // to MODEL_DIAGONAL_UNITS.
    let rotation = Quat::from_rotation_x(-std::f32::consts::FRAC_PI_2);
    let centre = (lo + hi) * 0.5;
    let diagonal = (hi - lo).length().max(1e-6);
    let s = MODEL_DIAGONAL_UNITS / diagonal;
    let root = Transform {
        translation: -(rotation * centre) * s,
        rotation,
        scale: Vec3::splat(s),
    };
    if let Ok(mut t) = transforms.get_mut(scene.model_root) {
        *t = root;
    }
    for slot in MicroSlot::ALL {
        let anchor = snapshot.get(slot).and_then(|shown| {
            let (a, b) = bounds(&shown.mesh)?;
            let offset = *offsets.get(slot);
            let top = Vec3::new(
                0.5 * (a.x + b.x),
                0.5 * (a.y + b.y),
                b.z + 0.06 * (b.z - a.z),
            );
            Some(root.transform_point(top + offset))
        });
        *scene.label_anchors.get_mut(slot) = anchor;
    }
    if scene.reframe {
        scene.reframe = false;
        if *active == ViewKind::Micro {
            let pair = MicroSlot::ALL.iter().all(|s| snapshot.get(*s).is_some());
            for mut orbit in &mut cameras {
                *orbit = if pair {
                    OrbitCamera::micro_pair_default()
                } else {
                    OrbitCamera::default()
                };
                let fill = if pair {
                    super::camera::MICRO_PAIR_FILL
                } else {
                    super::camera::MICRO_FILL
                };
                orbit.frame_in(MODEL_DIAGONAL_UNITS * 0.5, fill, &layout);
            }
        }
    }
}

/// Translations (model coordinates, mm) that put the real structure left of the origin and
/// the generated one right of it, a gap between them, both centred in y and z; a structure
/// shown alone is centred.
fn pair_offsets(snapshot: &Snapshot) -> PerSlot<Vec3> {
    let boxes = PerSlot {
        real: snapshot.get(MicroSlot::Real).and_then(|s| bounds(&s.mesh)),
        generated: snapshot
            .get(MicroSlot::Generated)
            .and_then(|s| bounds(&s.mesh)),
    };
    let centre = |b: Option<(Vec3, Vec3)>| b.map_or(Vec3::ZERO, |(lo, hi)| (lo + hi) * 0.5);
    let width = |b: Option<(Vec3, Vec3)>| b.map_or(0.0, |(lo, hi)| hi.x - lo.x);
    match (boxes.real, boxes.generated) {
        (Some(_), Some(_)) => {
            let gap = PAIR_GAP_FRACTION * width(boxes.real).max(width(boxes.generated));
            PerSlot {
                real: Vec3::new(-0.5 * (gap + width(boxes.real)), 0.0, 0.0) - centre(boxes.real),
                generated: Vec3::new(0.5 * (gap + width(boxes.generated)), 0.0, 0.0)
                    - centre(boxes.generated),
            }
        }
        _ => PerSlot {
            real: -centre(boxes.real),
            generated: -centre(boxes.generated),
        },
    }
}

fn bounds(mesh: &SurfaceMesh) -> Option<(Vec3, Vec3)> {
    let mut it = mesh.positions.iter().map(|p| Vec3::from_array(*p));
    let first = it.next()?;
    Some(it.fold((first, first), |(lo, hi), p| (lo.min(p), hi.max(p))))
}

/// Converts a core surface mesh to a Bevy mesh with linear-RGB vertex colours: the bone colour,
/// or the field through `scale` and viridis.
pub fn to_bevy_mesh(surface: &SurfaceMesh, field: Option<(&[f32], ColorScale)>) -> Mesh {
    let n = surface.positions.len();
    let colors: Vec<[f32; 4]> = match field {
        Some((values, scale)) if values.len() == n => values
            .iter()
            .map(|&v| srgb_to_linear_rgba(viridis_srgb(scale.normalize(v))))
            .collect(),
        _ => vec![srgb_to_linear_rgba(BONE_SRGB); n],
    };
    colored_mesh(surface, colors)
}

/// A Bevy triangle mesh of `surface` with one linear-RGBA colour per vertex (its normals, or +z
/// where it has none).
pub fn colored_mesh(surface: &SurfaceMesh, colors: Vec<[f32; 4]>) -> Mesh {
    let n = surface.positions.len();
    let normals = if surface.normals.len() == n {
        surface.normals.clone()
    } else {
        vec![[0.0, 0.0, 1.0]; n]
    };
    let mut mesh = Mesh::new(
        PrimitiveTopology::TriangleList,
        RenderAssetUsages::RENDER_WORLD,
    );
    mesh.insert_attribute(Mesh::ATTRIBUTE_POSITION, surface.positions.clone());
    mesh.insert_attribute(Mesh::ATTRIBUTE_NORMAL, normals);
    mesh.insert_attribute(Mesh::ATTRIBUTE_COLOR, colors);
    mesh.insert_indices(Indices::U32(surface.indices.clone()));
    mesh
}

pub fn srgb_to_linear_rgba(c: [f32; 3]) -> [f32; 4] {
    let l = Color::srgb(c[0], c[1], c[2]).to_linear();
    [l.red, l.green, l.blue, 1.0]
}
