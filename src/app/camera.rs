//! A small orbit camera: left-drag orbits, right- or middle-drag pans, the wheel zooms
//! (Shift + left-drag is left to the vertebra view, where it moves the clip plane). Input is
//! ignored while egui uses the pointer (panel, sliders, plot). Each view keeps its own camera:
//! switching views saves the orbit of the one left and restores the other's.

use bevy::input::mouse::{AccumulatedMouseMotion, AccumulatedMouseScroll, MouseScrollUnit};
use bevy::prelude::*;
use bevy::window::RequestRedraw;
use bevy_egui::input::EguiWantsInput;

use super::scene::{ViewKind, ViewportLayout};

/// Spherical coordinates of the camera around a target point (Y up).
#[derive(Component, Clone, Debug)]
pub struct OrbitCamera {
    pub target: Vec3,
    pub distance: f32,
    /// Rotation about +Y, radians.
    pub yaw: f32,
    /// Elevation above the XZ plane, radians, kept inside (-π/2, π/2).
    pub pitch: f32,
    /// Field of view the framing assumes (Bevy's default perspective, 45°).
    pub fov: f32,
}

impl Default for OrbitCamera {
    fn default() -> Self {
        Self {
            target: Vec3::ZERO,
            distance: 20.0,
            yaw: 0.65,
            pitch: 0.32,
            fov: std::f32::consts::FRAC_PI_4,
        }
    }
}

impl OrbitCamera {
    /// The vertebra view's start: from the right (+x, where the clip plane's cap faces) and
    /// a little anterior and above, so the cut face and the anterior wall both show.
    pub fn vertebra_default() -> Self {
        Self {
            yaw: std::f32::consts::FRAC_PI_2 + 0.55,
            pitch: 0.28,
            ..Self::default()
        }
    }

    /// The microstructure view with two cubes side by side along x: seen from the front,
    /// a little to the right and above, so that neither cube hides the other.
    pub fn micro_pair_default() -> Self {
        Self {
            yaw: 0.28,
            pitch: 0.30,
            ..Self::default()
        }
    }

    /// Sets the distance so a sphere of `radius` around the target spans `fill` times the
    /// smaller side of the visible 3-D area (the window minus the panels, see
    /// [`ViewportLayout`]); `fill` < 1 leaves a margin, > 1 suits flat models whose bounding
    /// sphere overstates their size. The camera's frustum spans the virtual image that
    /// centres the principal point in that area (see `ui::panels_ui`), whose height is the
    /// window's plus the bottom panel's.
    pub fn frame_in(&mut self, radius: f32, fill: f32, layout: &ViewportLayout) {
        let full_height = (layout.window.y + layout.bottom_panel).max(1.0);
        let focal_px = 0.5 * full_height / (0.5 * self.fov).tan();
        let visible_w = (layout.window.x - layout.left_panel).max(50.0);
        let visible_h = (layout.window.y - layout.bottom_panel).max(50.0);
        let half_px = 0.5 * visible_w.min(visible_h) * fill;
        let half_angle = (half_px / focal_px).atan().max(1e-3);
        self.distance = radius / half_angle.sin();
    }

    pub fn transform(&self) -> Transform {
        let dir = Vec3::new(
            self.pitch.cos() * self.yaw.sin(),
            self.pitch.sin(),
            self.pitch.cos() * self.yaw.cos(),
        );
        Transform::from_translation(self.target + dir * self.distance)
            .looking_at(self.target, Vec3::Y)
    }
}

/// Framing of the microstructure (a cube: its bounding sphere is a fair bound).
pub const MICRO_FILL: f32 = 0.85;
/// Framing of the real and generated cubes side by side (a 2:1 box: its bounding sphere
/// overstates the height on screen).
pub const MICRO_PAIR_FILL: f32 = 1.1;
/// Framing of the vertebra (a flat cylinder, half of it clipped away: its bounding sphere
/// overstates the size on screen).
pub const VERTEBRA_FILL: f32 = 1.2;

const ORBIT_RADIANS_PER_PIXEL: f32 = 0.008;
const PITCH_LIMIT: f32 = std::f32::consts::FRAC_PI_2 - 0.02;

/// Saves the orbit of the view being left and restores the one of the view entered (a view
/// never shown yet is framed when its model arrives).
pub fn switch_view_camera(
    active: Res<ViewKind>,
    layout: Res<ViewportLayout>,
    mut cameras: Query<&mut OrbitCamera>,
    mut saved: Local<[Option<OrbitCamera>; 2]>,
    mut previous: Local<Option<ViewKind>>,
) {
    let now = *active;
    let Some(before) = previous.replace(now) else {
        return;
    };
    if before == now {
        return;
    }
    let slot = |v: ViewKind| match v {
        ViewKind::Vertebra => 0,
        ViewKind::Micro => 1,
    };
    for mut orbit in &mut cameras {
        saved[slot(before)] = Some(orbit.clone());
        *orbit = match saved[slot(now)].clone() {
            Some(o) => o,
            None => {
                let (mut o, fill) = match now {
                    ViewKind::Vertebra => (OrbitCamera::vertebra_default(), VERTEBRA_FILL),
                    ViewKind::Micro => (OrbitCamera::default(), MICRO_FILL),
                };
                o.frame_in(5.0, fill, &layout);
                o
            }
        };
    }
}

#[allow(clippy::too_many_arguments)]
pub fn orbit_camera(
    mut cameras: Query<(&mut OrbitCamera, &mut Transform)>,
    buttons: Res<ButtonInput<MouseButton>>,
    keys: Res<ButtonInput<KeyCode>>,
    motion: Res<AccumulatedMouseMotion>,
    scroll: Res<AccumulatedMouseScroll>,
    egui_input: Option<Res<EguiWantsInput>>,
    mut redraw: MessageWriter<RequestRedraw>,
) {
    let egui_busy = egui_input.is_some_and(|e| e.wants_any_pointer_input());
    for (mut orbit, mut transform) in &mut cameras {
        let mut changed = orbit.is_added();
        if !egui_busy {
            let delta = motion.delta;
            let shift = keys.any_pressed([KeyCode::ShiftLeft, KeyCode::ShiftRight]);
            if delta != Vec2::ZERO {
                if buttons.pressed(MouseButton::Left) && !shift {
                    orbit.yaw -= delta.x * ORBIT_RADIANS_PER_PIXEL;
                    orbit.pitch = (orbit.pitch + delta.y * ORBIT_RADIANS_PER_PIXEL)
                        .clamp(-PITCH_LIMIT, PITCH_LIMIT);
                    changed = true;
                } else if buttons.pressed(MouseButton::Right)
                    || buttons.pressed(MouseButton::Middle)
                {
                    // Pan in the view plane; one pixel moves about one pixel's worth of scene
                    // at the target depth (for a ~900 px high viewport).
                    let per_pixel = orbit.distance * (0.5 * orbit.fov).tan() * 2.0 / 900.0;
                    let right = transform.right();
                    let up = transform.up();
                    orbit.target += (-delta.x * right + delta.y * up) * per_pixel;
                    changed = true;
                }
            }
            let lines = match scroll.unit {
                MouseScrollUnit::Line => scroll.delta.y,
                MouseScrollUnit::Pixel => scroll.delta.y / 40.0,
            };
            if lines != 0.0 {
                orbit.distance = (orbit.distance * (-0.12 * lines).exp()).clamp(0.05, 1.0e4);
                changed = true;
            }
        }
        if changed || orbit.is_changed() {
            *transform = orbit.transform();
            if changed {
                redraw.write(RequestRedraw);
            }
        }
    }
}
