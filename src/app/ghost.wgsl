// Translucent vertex-colour material for the bone resorbed since day 0 in the multiscale view
// (software and GPU paths alike): the surface is lit by a headlight at the camera, and it is
// more opaque where it is seen edge-on, so that it reads as a shell around the remaining bone
// while the bone inside stays visible. Alpha comes from the vertex colour.

#import bevy_pbr::{
    forward_io::VertexOutput,
    mesh_view_bindings::view,
}

@fragment
fn fragment(
    in: VertexOutput,
    @builtin(front_facing) is_front: bool,
) -> @location(0) vec4<f32> {
#ifdef VERTEX_COLORS
    let base = in.color;
#else
    let base = vec4<f32>(0.95, 0.40, 0.20, 0.45);
#endif
    var n = normalize(in.world_normal);
    if !is_front {
        n = -n;
    }
    let to_eye = normalize(view.world_position - in.world_position.xyz);
    let facing = abs(dot(n, to_eye));
    let lit = base.rgb * (0.45 + 0.55 * facing);
    let alpha = clamp(base.a * (0.6 + 0.8 * (1.0 - facing)), 0.0, 1.0);
    return vec4<f32>(lit, alpha);
}
