/* A user program built against the installed vktrain: opens the default
 * device and runs the self-check through the public API only. */
#include <stdio.h>
#include <vktrain/vktrain.h>

int main(void)
{
    if (vkt_version() != VKT_VERSION_NUMBER) {
        fprintf(stderr, "header %d vs library %u\n", VKT_VERSION_NUMBER, vkt_version());
        return 1;
    }
    vkt_device *dev = NULL;
    vkt_status st = vkt_device_create(NULL, &dev);
    if (st != VKT_OK) {
        fprintf(stderr, "vkt_device_create: %s\n", vkt_last_error());
        return 1;
    }
    vkt_selftest_result r;
    st = vkt_device_selftest(dev, &r);
    printf("consumer: vktrain %s on %s: %s\n", vkt_version_string(),
           vkt_device_get_caps(dev)->name, st == VKT_OK ? "ok" : vkt_last_error());
    vkt_device_destroy(dev);
    return st == VKT_OK ? 0 : 1;
}
