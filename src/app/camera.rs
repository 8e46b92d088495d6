//! A small orbit camera: left-drag orbits, right- or middle-drag pans, the wheel zooms.
//! Input is ignored while egui uses the pointer (panel, sliders, plot).

use bevy::input::mouse::{AccumulatedMouseMotion, AccumulatedMouseScroll, MouseScrollUnit};
use bevy::prelude::*;
use bevy::window::RequestRedraw;
use bevy_egui::input::EguiWantsInput;

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
    /// Frames a sphere of `radius` around the origin from the default direction.
    pub fn frame(&mut self, radius: f32) {
        let d = Self::default();
        self.target = Vec3::ZERO;
        self.yaw = d.yaw;
        self.pitch = d.pitch;
        self.distance = radius / (0.5 * self.fov).sin() * 1.08;
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

const ORBIT_RADIANS_PER_PIXEL: f32 = 0.008;
const PITCH_LIMIT: f32 = std::f32::consts::FRAC_PI_2 - 0.02;

pub fn orbit_camera(
    mut cameras: Query<(&mut OrbitCamera, &mut Transform)>,
    buttons: Res<ButtonInput<MouseButton>>,
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
            if delta != Vec2::ZERO {
                if buttons.pressed(MouseButton::Left) {
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
