/* Build tool: turn one SPIR-V binary into a C file with a const uint32_t
 * array, so shaders are embedded in the library and no file is needed at run
 * time. Usage: spv_embed IN.spv OUT.c NAME
 * OUT.c defines `const vkt__spirv vkt__spv_NAME` (see the generated
 * vkt_spirv.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s IN.spv OUT.c NAME\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    uint32_t *words = NULL;
    size_t n = 0, cap = 0;
    uint32_t w;
    while (fread(&w, 4, 1, in) == 1) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            words = realloc(words, cap * sizeof *words);
            if (!words) return 1;
        }
        words[n++] = w;
    }
    fclose(in);
    if (n < 5 || words[0] != 0x07230203u) {
        fprintf(stderr, "%s: not a SPIR-V module\n", argv[1]);
        return 1;
    }
    FILE *out = fopen(argv[2], "w");
    if (!out) {
        perror(argv[2]);
        return 1;
    }
    fprintf(out, "/* generated from %s by spv_embed; do not edit */\n"
                 "#include \"vkt_spirv.h\"\n\nstatic const uint32_t words[%zu] = {",
            argv[1], n);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s0x%08x,", i % 8 ? " " : "\n    ", words[i]);
    fprintf(out, "\n};\n\nconst vkt__spirv vkt__spv_%s = {\"%s\", words, sizeof words};\n",
            argv[3], argv[3]);
    free(words);
    return fclose(out) == 0 ? 0 : 1;
}
