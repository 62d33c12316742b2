#version 450
#extension GL_GOOGLE_include_directive : require
// empty: does nothing. Measures the fixed cost of a dispatch (vktrain bench
// dispatch) and of a submit.
// Bindings: 0 — unused storage buffer (a real pipeline layout always has one).
// Push: none. Spec: 0 = workgroup size.
#include "common.glsl"

layout(set = 0, binding = 0) buffer Unused { uint data[]; } unused;

void main() {}
