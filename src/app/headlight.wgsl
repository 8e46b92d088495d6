// Cheap lit vertex-colour material for software rasterisers (Mesa lavapipe / llvmpipe).
//
// One headlight at the camera (Lambert) plus a hemispherical sky/ground fill and a touch of
// Blinn-Phong specular, evaluated per fragment: no clustered lights, shadows or image-based
// lighting, which is what makes Bevy's PBR path about ten times slower on a CPU. Back faces
// (seen when the camera enters the bone) are shaded with the flipped normal and darkened.

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
    let base = in.color.rgb;
#else
    let base = vec3<f32>(0.78, 0.72, 0.60);
#endif
    var n = normalize(in.world_normal);
    var side = 1.0;
    if !is_front {
        n = -n;
        side = 0.55;
    }
    let to_eye = normalize(view.world_position - in.world_position.xyz);
    let lambert = max(dot(n, to_eye), 0.0);
    // Sky (up = +Y) / ground hemisphere fill.
    let hemi = 0.5 + 0.5 * n.y;
    let fill = mix(0.10, 0.22, hemi);
    // Key light slightly above the eye direction gives relief to trabeculae seen end-on.
    let spec = pow(lambert, 24.0) * 0.12;
    let lit = base * (fill + 0.78 * lambert) + vec3<f32>(spec);
    return vec4<f32>(lit * side, 1.0);
}
