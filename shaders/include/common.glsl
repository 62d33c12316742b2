// Shared by every vktrain compute shader.
//
// Convention: specialization constant 0 is the workgroup size in x
// (layout(local_size_x_id = 0)); ids 1.. are the shader's own tunables.
// Push-constant blocks are mirrored by a C struct next to the op's launcher
// and checked there with _Static_assert(sizeof <= 128).
#extension GL_EXT_control_flow_attributes : enable

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

// Index of the invocation across the whole dispatch (x only).
uint global_x() { return gl_GlobalInvocationID.x; }
