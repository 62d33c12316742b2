// Push constants shared by the simple elementwise kernels of
// src/ops/elementwise.c (mirrored there by struct ew_push):
//   n        elements (or rows, for bias_bwd) this dispatch covers
//   off0..2  element offset of bindings 0..2 inside their windows, already
//            shifted by the launcher for this dispatch
//   c        channels (bias ops): elements per row
//   col0     column of this dispatch's element 0 (bias_fwd), or first column
//            (bias_bwd)
//   alpha    per-op scalar (add/accumulate: factor of b; mse: inv_count ...)
//   beta     spare scalar, 0 unless an op says otherwise
#ifndef VKT_EW_PUSH_GLSL
#define VKT_EW_PUSH_GLSL

layout(push_constant) uniform Push {
    uint n, off0, off1, off2, c, col0;
    float alpha, beta;
} pc;

#endif
