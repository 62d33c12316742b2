# Shader build: every variant is one row of VKT_SHADER_TABLE.
#   row = "<variant name>|<source under shaders/>|<-D defines, ';'-free, space separated>"
# Each variant is compiled by glslangValidator (Vulkan 1.2 → SPIR-V 1.5),
# validated by spirv-val, and embedded as a C array. Dependencies on
# shaders/include/*.glsl come from glslang's depfile, so editing one .comp or
# .glsl rebuilds only the variants that use it.
set(VKT_SHADER_TABLE
  "empty|empty.comp|"
  "axpy_f32|axpy.comp|"
  "reduce_sum_f32|reduce_sum.comp|"
  "iota_u32|iota.comp|"
  "spec_probe|spec_probe.comp|"
  "matmul_cpu_f32_r16c4|matmul_cpu.comp|-DDTYPE_F32 -DR=16 -DCV=4"
  "matmul_cpu_f16_r16c4|matmul_cpu.comp|-DDTYPE_F16 -DR=16 -DCV=4"
  "matmul_cpu_bf16_r16c4|matmul_cpu.comp|-DDTYPE_BF16 -DR=16 -DCV=4"
  "matmul_cpu_f32_big_r64c4|matmul_cpu.comp|-DDTYPE_F32 -DBIG -DR=64 -DCV=4"
  "matmul_cpu_f16_big_r64c4|matmul_cpu.comp|-DDTYPE_F16 -DBIG -DR=64 -DCV=4"
  "matmul_cpu_bf16_big_r64c4|matmul_cpu.comp|-DDTYPE_BF16 -DBIG -DR=64 -DCV=4"
  "matmul_gpu_f32|matmul_gpu.comp|-DDTYPE_F32"
  "matmul_gpu_f16|matmul_gpu.comp|-DDTYPE_F16"
  "matmul_gpu_bf16|matmul_gpu.comp|-DDTYPE_BF16"
  "opt_adam_f32|opt_adam.comp|-DDTYPE_F32"
  "opt_adam_f16|opt_adam.comp|-DDTYPE_F16"
  "opt_adam_bf16|opt_adam.comp|-DDTYPE_BF16"
  "opt_sgd_f32|opt_sgd.comp|-DDTYPE_F32"
  "opt_sgd_f16|opt_sgd.comp|-DDTYPE_F16"
  "opt_sgd_bf16|opt_sgd.comp|-DDTYPE_BF16"
  "grad_sumsq_f32|grad_sumsq.comp|-DDTYPE_F32"
  "grad_sumsq_f16|grad_sumsq.comp|-DDTYPE_F16"
  "grad_sumsq_bf16|grad_sumsq.comp|-DDTYPE_BF16"
  "layernorm_fwd_cpu_f32|layernorm_fwd.comp|-DDTYPE_F32"
  "layernorm_fwd_cpu_f16|layernorm_fwd.comp|-DDTYPE_F16"
  "layernorm_fwd_cpu_bf16|layernorm_fwd.comp|-DDTYPE_BF16"
  "layernorm_fwd_gpu_f32|layernorm_fwd.comp|-DDTYPE_F32 -DFAMILY_GPU"
  "layernorm_fwd_gpu_f16|layernorm_fwd.comp|-DDTYPE_F16 -DFAMILY_GPU"
  "layernorm_fwd_gpu_bf16|layernorm_fwd.comp|-DDTYPE_BF16 -DFAMILY_GPU"
  "layernorm_bwd_cpu_f32|layernorm_bwd.comp|-DDTYPE_F32"
  "layernorm_bwd_cpu_f16|layernorm_bwd.comp|-DDTYPE_F16"
  "layernorm_bwd_cpu_bf16|layernorm_bwd.comp|-DDTYPE_BF16"
  "layernorm_bwd_gpu_f32|layernorm_bwd.comp|-DDTYPE_F32 -DFAMILY_GPU"
  "layernorm_bwd_gpu_f16|layernorm_bwd.comp|-DDTYPE_F16 -DFAMILY_GPU"
  "layernorm_bwd_gpu_bf16|layernorm_bwd.comp|-DDTYPE_BF16 -DFAMILY_GPU"
  "layernorm_colsum_cpu_f32|layernorm_colsum.comp|-DDTYPE_F32"
  "layernorm_colsum_cpu_f16|layernorm_colsum.comp|-DDTYPE_F16"
  "layernorm_colsum_cpu_bf16|layernorm_colsum.comp|-DDTYPE_BF16"
  "layernorm_colsum_gpu_f32|layernorm_colsum.comp|-DDTYPE_F32 -DFAMILY_GPU"
  "layernorm_colsum_gpu_f16|layernorm_colsum.comp|-DDTYPE_F16 -DFAMILY_GPU"
  "layernorm_colsum_gpu_bf16|layernorm_colsum.comp|-DDTYPE_BF16 -DFAMILY_GPU"
  "xent_fwd_cpu_f32|xent_fwd.comp|-DDTYPE_F32"
  "xent_fwd_cpu_f16|xent_fwd.comp|-DDTYPE_F16"
  "xent_fwd_cpu_bf16|xent_fwd.comp|-DDTYPE_BF16"
  "xent_fwd_gpu_f32|xent_fwd.comp|-DDTYPE_F32 -DFAMILY_GPU"
  "xent_fwd_gpu_f16|xent_fwd.comp|-DDTYPE_F16 -DFAMILY_GPU"
  "xent_fwd_gpu_bf16|xent_fwd.comp|-DDTYPE_BF16 -DFAMILY_GPU"
  "xent_bwd_cpu_f32|xent_bwd.comp|-DDTYPE_F32"
  "xent_bwd_cpu_f16|xent_bwd.comp|-DDTYPE_F16"
  "xent_bwd_cpu_bf16|xent_bwd.comp|-DDTYPE_BF16"
  "xent_bwd_gpu_f32|xent_bwd.comp|-DDTYPE_F32 -DFAMILY_GPU"
  "xent_bwd_gpu_f16|xent_bwd.comp|-DDTYPE_F16 -DFAMILY_GPU"
  "xent_bwd_gpu_bf16|xent_bwd.comp|-DDTYPE_BF16 -DFAMILY_GPU"
  "embed_fwd_f32|embed_fwd.comp|-DDTYPE_F32"
  "embed_fwd_f16|embed_fwd.comp|-DDTYPE_F16"
  "embed_fwd_bf16|embed_fwd.comp|-DDTYPE_BF16"
  "embed_bwd_wpe_f32|embed_bwd_wpe.comp|-DDTYPE_F32"
  "embed_bwd_wpe_f16|embed_bwd_wpe.comp|-DDTYPE_F16"
  "embed_bwd_wpe_bf16|embed_bwd_wpe.comp|-DDTYPE_BF16"
  "embed_bwd_wte_cpu_f32|embed_bwd_wte.comp|-DDTYPE_F32"
  "embed_bwd_wte_cpu_f16|embed_bwd_wte.comp|-DDTYPE_F16"
  "embed_bwd_wte_cpu_bf16|embed_bwd_wte.comp|-DDTYPE_BF16"
  "embed_bwd_wte_gpu_f32|embed_bwd_wte.comp|-DDTYPE_F32 -DFAMILY_GPU"
  "embed_bwd_wte_gpu_f16|embed_bwd_wte.comp|-DDTYPE_F16 -DFAMILY_GPU"
  "embed_bwd_wte_gpu_bf16|embed_bwd_wte.comp|-DDTYPE_BF16 -DFAMILY_GPU"
  "attention_fwd_cpu_h16_f32|attention_fwd.comp|-DDTYPE_F32 -DHSP=16"
  "attention_fwd_cpu_h16_f16|attention_fwd.comp|-DDTYPE_F16 -DHSP=16"
  "attention_fwd_cpu_h16_bf16|attention_fwd.comp|-DDTYPE_BF16 -DHSP=16"
  "attention_fwd_cpu_h32_f32|attention_fwd.comp|-DDTYPE_F32 -DHSP=32"
  "attention_fwd_cpu_h32_f16|attention_fwd.comp|-DDTYPE_F16 -DHSP=32"
  "attention_fwd_cpu_h32_bf16|attention_fwd.comp|-DDTYPE_BF16 -DHSP=32"
  "attention_fwd_cpu_h64_f32|attention_fwd.comp|-DDTYPE_F32 -DHSP=64"
  "attention_fwd_cpu_h64_f16|attention_fwd.comp|-DDTYPE_F16 -DHSP=64"
  "attention_fwd_cpu_h64_bf16|attention_fwd.comp|-DDTYPE_BF16 -DHSP=64"
  "attention_fwd_cpu_h128_f32|attention_fwd.comp|-DDTYPE_F32 -DHSP=128"
  "attention_fwd_cpu_h128_f16|attention_fwd.comp|-DDTYPE_F16 -DHSP=128"
  "attention_fwd_cpu_h128_bf16|attention_fwd.comp|-DDTYPE_BF16 -DHSP=128"
  "attention_bwd_q_cpu_h16_f32|attention_bwd_q.comp|-DDTYPE_F32 -DHSP=16"
  "attention_bwd_q_cpu_h16_f16|attention_bwd_q.comp|-DDTYPE_F16 -DHSP=16"
  "attention_bwd_q_cpu_h16_bf16|attention_bwd_q.comp|-DDTYPE_BF16 -DHSP=16"
  "attention_bwd_q_cpu_h32_f32|attention_bwd_q.comp|-DDTYPE_F32 -DHSP=32"
  "attention_bwd_q_cpu_h32_f16|attention_bwd_q.comp|-DDTYPE_F16 -DHSP=32"
  "attention_bwd_q_cpu_h32_bf16|attention_bwd_q.comp|-DDTYPE_BF16 -DHSP=32"
  "attention_bwd_q_cpu_h64_f32|attention_bwd_q.comp|-DDTYPE_F32 -DHSP=64"
  "attention_bwd_q_cpu_h64_f16|attention_bwd_q.comp|-DDTYPE_F16 -DHSP=64"
  "attention_bwd_q_cpu_h64_bf16|attention_bwd_q.comp|-DDTYPE_BF16 -DHSP=64"
  "attention_bwd_q_cpu_h128_f32|attention_bwd_q.comp|-DDTYPE_F32 -DHSP=128"
  "attention_bwd_q_cpu_h128_f16|attention_bwd_q.comp|-DDTYPE_F16 -DHSP=128"
  "attention_bwd_q_cpu_h128_bf16|attention_bwd_q.comp|-DDTYPE_BF16 -DHSP=128"
  "attention_bwd_kv_cpu_h16_f32|attention_bwd_kv.comp|-DDTYPE_F32 -DHSP=16"
  "attention_bwd_kv_cpu_h16_f16|attention_bwd_kv.comp|-DDTYPE_F16 -DHSP=16"
  "attention_bwd_kv_cpu_h16_bf16|attention_bwd_kv.comp|-DDTYPE_BF16 -DHSP=16"
  "attention_bwd_kv_cpu_h32_f32|attention_bwd_kv.comp|-DDTYPE_F32 -DHSP=32"
  "attention_bwd_kv_cpu_h32_f16|attention_bwd_kv.comp|-DDTYPE_F16 -DHSP=32"
  "attention_bwd_kv_cpu_h32_bf16|attention_bwd_kv.comp|-DDTYPE_BF16 -DHSP=32"
  "attention_bwd_kv_cpu_h64_f32|attention_bwd_kv.comp|-DDTYPE_F32 -DHSP=64"
  "attention_bwd_kv_cpu_h64_f16|attention_bwd_kv.comp|-DDTYPE_F16 -DHSP=64"
  "attention_bwd_kv_cpu_h64_bf16|attention_bwd_kv.comp|-DDTYPE_BF16 -DHSP=64"
  "attention_bwd_kv_cpu_h128_f32|attention_bwd_kv.comp|-DDTYPE_F32 -DHSP=128"
  "attention_bwd_kv_cpu_h128_f16|attention_bwd_kv.comp|-DDTYPE_F16 -DHSP=128"
  "attention_bwd_kv_cpu_h128_bf16|attention_bwd_kv.comp|-DDTYPE_BF16 -DHSP=128"
  "attention_fwd_gpu_f32|attention_fwd.comp|-DDTYPE_F32 -DFAMILY_GPU"
  "attention_fwd_gpu_f16|attention_fwd.comp|-DDTYPE_F16 -DFAMILY_GPU"
  "attention_fwd_gpu_bf16|attention_fwd.comp|-DDTYPE_BF16 -DFAMILY_GPU"
  "attention_bwd_q_gpu_f32|attention_bwd_q.comp|-DDTYPE_F32 -DFAMILY_GPU"
  "attention_bwd_q_gpu_f16|attention_bwd_q.comp|-DDTYPE_F16 -DFAMILY_GPU"
  "attention_bwd_q_gpu_bf16|attention_bwd_q.comp|-DDTYPE_BF16 -DFAMILY_GPU"
  "attention_bwd_kv_gpu_f32|attention_bwd_kv.comp|-DDTYPE_F32 -DFAMILY_GPU"
  "attention_bwd_kv_gpu_f16|attention_bwd_kv.comp|-DDTYPE_F16 -DFAMILY_GPU"
  "attention_bwd_kv_gpu_bf16|attention_bwd_kv.comp|-DDTYPE_BF16 -DFAMILY_GPU"
  "bias_fwd_f32|bias_fwd.comp|-DDTYPE_F32"
  "bias_fwd_f16|bias_fwd.comp|-DDTYPE_F16"
  "bias_fwd_bf16|bias_fwd.comp|-DDTYPE_BF16"
  "bias_bwd_f32|bias_bwd.comp|-DDTYPE_F32"
  "bias_bwd_f16|bias_bwd.comp|-DDTYPE_F16"
  "bias_bwd_bf16|bias_bwd.comp|-DDTYPE_BF16"
  "act_fwd_f32|act_fwd.comp|-DDTYPE_F32"
  "act_fwd_f16|act_fwd.comp|-DDTYPE_F16"
  "act_fwd_bf16|act_fwd.comp|-DDTYPE_BF16"
  "act_bwd_f32|act_bwd.comp|-DDTYPE_F32"
  "act_bwd_f16|act_bwd.comp|-DDTYPE_F16"
  "act_bwd_bf16|act_bwd.comp|-DDTYPE_BF16"
  "add_fwd_f32|add_fwd.comp|-DDTYPE_F32"
  "add_fwd_f16|add_fwd.comp|-DDTYPE_F16"
  "add_fwd_bf16|add_fwd.comp|-DDTYPE_BF16"
  "zero_fwd_f32|zero_fwd.comp|-DDTYPE_F32"
  "zero_fwd_f16|zero_fwd.comp|-DDTYPE_F16"
  "zero_fwd_bf16|zero_fwd.comp|-DDTYPE_BF16"
  "dropout_fwd_f32|dropout_fwd.comp|-DDTYPE_F32"
  "dropout_fwd_f16|dropout_fwd.comp|-DDTYPE_F16"
  "dropout_fwd_bf16|dropout_fwd.comp|-DDTYPE_BF16"
  "dropout_bwd_f32|dropout_bwd.comp|-DDTYPE_F32"
  "dropout_bwd_f16|dropout_bwd.comp|-DDTYPE_F16"
  "dropout_bwd_bf16|dropout_bwd.comp|-DDTYPE_BF16"
  "mse_fwd_f32|mse_fwd.comp|-DDTYPE_F32"
  "mse_fwd_f16|mse_fwd.comp|-DDTYPE_F16"
  "mse_fwd_bf16|mse_fwd.comp|-DDTYPE_BF16"
  "mse_bwd_f32|mse_bwd.comp|-DDTYPE_F32"
  "mse_bwd_f16|mse_bwd.comp|-DDTYPE_F16"
  "mse_bwd_bf16|mse_bwd.comp|-DDTYPE_BF16"
  "cast_f32_to_f32|cast_fwd.comp|-DSRC_F32 -DDTYPE_F32"
  "cast_f32_to_f16|cast_fwd.comp|-DSRC_F32 -DDTYPE_F16"
  "cast_f32_to_bf16|cast_fwd.comp|-DSRC_F32 -DDTYPE_BF16"
  "cast_f16_to_f32|cast_fwd.comp|-DSRC_F16 -DDTYPE_F32"
  "cast_f16_to_f16|cast_fwd.comp|-DSRC_F16 -DDTYPE_F16"
  "cast_f16_to_bf16|cast_fwd.comp|-DSRC_F16 -DDTYPE_BF16"
  "cast_bf16_to_f32|cast_fwd.comp|-DSRC_BF16 -DDTYPE_F32"
  "cast_bf16_to_f16|cast_fwd.comp|-DSRC_BF16 -DDTYPE_F16"
  "cast_bf16_to_bf16|cast_fwd.comp|-DSRC_BF16 -DDTYPE_BF16"
)

find_program(GLSLANG_VALIDATOR glslangValidator REQUIRED)
find_program(SPIRV_VAL spirv-val REQUIRED)

add_executable(vkt_spv_embed cmake/spv_embed.c)

set(VKT_SPIRV_DIR ${PROJECT_BINARY_DIR}/spirv)
set(VKT_SPIRV_INCLUDE_DIR ${VKT_SPIRV_DIR})
file(MAKE_DIRECTORY ${VKT_SPIRV_DIR})
set(VKT_SPIRV_SOURCES ${VKT_SPIRV_DIR}/vkt_spirv.c)
set(externs "")
set(rows "")

foreach(row IN LISTS VKT_SHADER_TABLE)
  string(REPLACE "|" ";" fields "${row}|")
  list(GET fields 0 name)
  list(GET fields 1 src)
  list(GET fields 2 defs)
  separate_arguments(defs UNIX_COMMAND "${defs}")
  set(spv ${VKT_SPIRV_DIR}/${name}.spv)
  set(csrc ${VKT_SPIRV_DIR}/${name}.spv.c)
  add_custom_command(
    OUTPUT ${spv}
    COMMAND ${GLSLANG_VALIDATOR} -V --target-env vulkan1.2 --quiet
            -I${PROJECT_SOURCE_DIR}/shaders/include ${defs} --depfile ${spv}.d
            -o ${spv} ${PROJECT_SOURCE_DIR}/shaders/${src}
    # A module spirv-val rejects fails the build; ninja logs no success for
    # it, so the next build retries it instead of trusting the file.
    COMMAND ${SPIRV_VAL} --target-env vulkan1.2 ${spv}
    DEPENDS ${PROJECT_SOURCE_DIR}/shaders/${src}
    DEPFILE ${spv}.d
    COMMENT "GLSL ${name} (${src})"
    VERBATIM)
  add_custom_command(
    OUTPUT ${csrc}
    COMMAND vkt_spv_embed ${spv} ${csrc} ${name}
    DEPENDS ${spv} vkt_spv_embed
    COMMENT "embed ${name}.spv"
    VERBATIM)
  list(APPEND VKT_SPIRV_SOURCES ${csrc})
  string(APPEND externs "extern const vkt__spirv vkt__spv_${name};\n")
  string(APPEND rows "    &vkt__spv_${name},\n")
endforeach()

# The index is written at configure time, so it changes only with the table.
list(LENGTH VKT_SHADER_TABLE nshaders)
file(CONFIGURE OUTPUT ${VKT_SPIRV_DIR}/vkt_spirv.h CONTENT
"/* generated by cmake/shaders.cmake; do not edit */
#ifndef VKT_SPIRV_H
#define VKT_SPIRV_H
#include <stddef.h>
#include <stdint.h>
typedef struct vkt__spirv {
    const char *name;
    const uint32_t *code;
    size_t size;        /* bytes */
    uint32_t bindings;  /* storage buffers at set 0: bindings 0..bindings-1 */
    uint32_t push_size; /* bytes of the push-constant block, 0 if none */
} vkt__spirv;
extern const vkt__spirv *const vkt__spirv_table[];
extern const uint32_t vkt__spirv_count;
#endif
")
file(CONFIGURE OUTPUT ${VKT_SPIRV_DIR}/vkt_spirv.c CONTENT
"/* generated by cmake/shaders.cmake; do not edit */
#include \"vkt_spirv.h\"
${externs}
const vkt__spirv *const vkt__spirv_table[] = {
${rows}};
const uint32_t vkt__spirv_count = ${nshaders};
")
