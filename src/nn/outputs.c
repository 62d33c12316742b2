/* The model's outputs after a forward: the logits (XENT) or predictions
 * (MSE) that feed the loss, read back as fp32 for evaluation and sampling. */
#include "core/core_int.h"
#include "nn/nn_int.h"

/* The tensor the loss node reads. */
static const nn_tensor *pred_tensor(const vkt_model *m)
{
    return &m->g.t[m->g.n[m->g.nn - 1].in[0]];
}

uint32_t vkt_model_output_width(const vkt_model *m)
{
    return m ? m->out_features : 0;
}

vkt_status vkt_model_get_outputs(vkt_model *m, float *out)
{
    VKT_FAIL_IF(!m || !out, VKT_ERR_INVALID_ARG, "vkt_model_get_outputs: NULL argument");
    /* After the backward, the planner may have given the outputs' memory to
     * gradients. */
    VKT_FAIL_IF(!m->have_forward || m->g.nn == 0, VKT_ERR_INVALID_USAGE,
                "vkt_model_get_outputs: call it after vkt_model_forward and before "
                "vkt_model_backward");
    const nn_tensor *t = pred_tensor(m);
    size_t es = vkt_dtype_size(t->dtype);
    if (t->dtype == VKT_DTYPE_F32)
        return vkt_buffer_download(m->arena, t->offset, out, t->numel * es);
    /* f16/bf16: download into the front of out, then widen in place
     * (vkt__dtype_to_f32 goes back to front for this). */
    VKT_CHECK(vkt_buffer_download(m->arena, t->offset, out, t->numel * es));
    vkt__dtype_to_f32(t->dtype, out, out, t->numel);
    return VKT_OK;
}
