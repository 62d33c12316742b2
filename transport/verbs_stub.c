/* Backend verbs in a build without libibverbs-dev: every entry answers
 * VKT_ERR_UNSUPPORTED with the package to install, and auto never picks it. */
#include "channel.h"

#define MISSING "backend verbs is not built in: install libibverbs-dev (and rdma-core) and " \
                "re-run cmake"

int vkt__verbs_usable(void) { return 0; }

int vkt__verbs_sent(const vkt_chan *c)
{
    (void)c;
    return 1;
}

vkt_status vkt__verbs_describe(char *out, size_t cap)
{
    if (cap) out[0] = '\0';
    return VKT_ERROR(VKT_ERR_UNSUPPORTED, MISSING);
}

static vkt_status stub_listen(const vkt_chan_config *cfg, const char *host,
                              vkt_chan_listener **out, char *addr, size_t cap)
{
    (void)cfg, (void)host, (void)addr, (void)cap;
    *out = NULL;
    return VKT_ERROR(VKT_ERR_UNSUPPORTED, MISSING);
}

static vkt_status stub_connect(const vkt_chan_config *cfg, const char *addr, int peer,
                               vkt_chan_connecting **state, vkt_chan **out)
{
    (void)cfg, (void)addr, (void)peer, (void)state;
    *out = NULL;
    return VKT_ERROR(VKT_ERR_UNSUPPORTED, MISSING);
}

static void stub_close_listener(vkt_chan_listener *l) { (void)l; }
static void stub_abort_connect(vkt_chan_connecting *s) { (void)s; }

/* No channel of this kind can exist, so the data-path entries stay NULL. */
const vkt_channel_ops vkt__verbs_channel = {
    .version = VKT_CHANNEL_OPS_VERSION,
    .name = "verbs",
    .listen = stub_listen,
    .connect = stub_connect,
    .close_listener = stub_close_listener,
    .abort_connect = stub_abort_connect,
};
