/* The Gloo backend of a build without libgloo-dev (see gloo_backend.h): every
 * entry point says how to get the real one. */
#include "gloo_backend.h"
#include "transport_int.h"

int vkt__gloo_built(void) { return 0; }

int vkt__gloo_reduces(vkt_dtype t) { return t != VKT_DTYPE_BF16 && vkt_dtype_size(t) != 0; }

vkt_status vkt__gloo_create(struct vkt__store *store, int rank, int size, const char *host,
                            double timeout_s, vkt__gloo **out)
{
    *out = NULL;
    return VKT_ERROR(VKT_ERR_UNSUPPORTED, "backend gloo: this libvkt_transport was built "
                     "without Gloo; install libgloo-dev (apt-get install libgloo-dev) and "
                     "re-run cmake, or use backend auto, tcp or shm");
}

vkt_status vkt__gloo_run(vkt__gloo *g, const vkt__gloo_op *op)
{
    return VKT_ERROR(VKT_ERR_UNSUPPORTED, "backend gloo: not in this build; install "
                     "libgloo-dev and re-run cmake");
}

void vkt__gloo_close(vkt__gloo *g) {}

void vkt__gloo_destroy(vkt__gloo *g) {}
