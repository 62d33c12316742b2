/* The op library (internal API used by src/nn): each op records its
 * forward and backward kernels into a vkt_stream. */
#ifndef VKT_OPS_H
#define VKT_OPS_H

#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/norm.h"
#include "ops/ops_int.h"

/* ---- matmul ------------------------------------------------------------
 * C[M,N] = op(A) · op(B)   (or C += … with accumulate), all matrices
 * row-major and dense, A, B and C all of dtype t (f32, f16 or bf16; the
 * zero value is f32), multiplied and accumulated in fp32, C rounded once:
 *   NN: A[M,K] · B[K,N]
 *   TN: Aᵀ · B with A stored [K,M]      (weight gradients: dW += dYᵀ · X)
 *   NT: A · Bᵀ with B stored [N,K]      (linear forward: Y = X · Wᵀ)
 * batch > 1 repeats it with element strides between consecutive matrices
 * (stride 0 broadcasts that operand). C must not alias A or B. */
typedef enum vkt_matmul_layout {
    VKT_MATMUL_NN = 0,
    VKT_MATMUL_TN = 1,
    VKT_MATMUL_NT = 2,
} vkt_matmul_layout;

typedef struct vkt_matmul_args {
    vkt_tref c, a, b; /* of dtype t */
    uint32_t m, n, k; /* each ≥ 1 */
    vkt_matmul_layout layout;
    bool accumulate;
    uint32_t batch; /* 0 or 1: a single product */
    uint64_t stride_a, stride_b, stride_c; /* elements between batch entries */
    vkt_dtype t;                           /* of A, B and C; 0 = VKT_DTYPE_F32 */
} vkt_matmul_args;

vkt_status vkt_op_matmul(vkt_ops *ops, vkt_stream *s, const vkt_matmul_args *args);

/* ---- optimizers -----------------------------------------------------------
 * One update step over n parameters, recorded once and replayed: what
 * changes every step (learning rate, bias corrections, the gradient scale
 * = 1/loss_scale × clip coefficient) is read from a 4-float "hyper" view that
 * the host rewrites before each submit (vkt_op_adam_hyper/vkt_op_sgd_hyper).
 * params, m, v and the momentum buffer are fp32; grads and the compute copy
 * are of `dtype` (f32, f16, bf16). copy.buf == NULL: no compute copy (fp32
 * training updates the parameters in place). */
typedef struct vkt_adam_args {
    vkt_tref params, grads, m, v, copy, hyper;
    vkt_dtype dtype;
    uint64_t n;
    float beta1, beta2, eps, weight_decay;
    bool adamw; /* decoupled weight decay (AdamW) instead of L2 (Adam) */
} vkt_adam_args;

vkt_status vkt_op_adam(vkt_ops *ops, vkt_stream *s, const vkt_adam_args *a);
/* hyper[4] for step t (1-based): {lr, lr/(1-b1^t), 1/sqrt(1-b2^t), grad_scale}. */
void vkt_op_adam_hyper(float hyper[4], float lr, float beta1, float beta2, uint64_t t,
                       float grad_scale);

typedef struct vkt_sgd_args {
    vkt_tref params, grads, momentum_buf, copy, hyper;
    vkt_dtype dtype;
    uint64_t n;
    float momentum, weight_decay;
    bool nesterov;
} vkt_sgd_args;

vkt_status vkt_op_sgd(vkt_ops *ops, vkt_stream *s, const vkt_sgd_args *a);
/* hyper[4]: {lr, 0, 0, grad_scale}. */
void vkt_op_sgd_hyper(float hyper[4], float lr, float grad_scale);

/* ---- gradient norm and overflow check --------------------------------------
 * Partial sums of (g·scale)² into `partials` (fp32, vkt_op_grad_sumsq_partials
 * of them); the host adds them in double. A NaN or Inf gradient makes the
 * total non-finite: that is the fp16 overflow check. */
uint32_t vkt_op_grad_sumsq_partials(const vkt_ops *ops, uint64_t n);
vkt_status vkt_op_grad_sumsq(vkt_ops *ops, vkt_stream *s, vkt_tref partials, vkt_tref grads,
                             vkt_dtype dtype, uint64_t n, float scale);

#endif
