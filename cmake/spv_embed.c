/* Build tool: turn one SPIR-V binary into a C file with a const uint32_t
 * array, so shaders are embedded in the library and no file is needed at run
 * time. Usage: spv_embed IN.spv OUT.c NAME
 * OUT.c defines `const vkt__spirv vkt__spv_NAME` (see the generated
 * vkt_spirv.h), including what the library checks pipelines against: the
 * number of descriptor bindings (set 0) and the push-constant block size,
 * read from the module itself so a launcher cannot disagree with its shader. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OP_TYPE_INT = 21, OP_TYPE_FLOAT = 22, OP_TYPE_VECTOR = 23, OP_TYPE_STRUCT = 30,
       OP_TYPE_POINTER = 32, OP_VARIABLE = 59, OP_DECORATE = 71, OP_MEMBER_DECORATE = 72,
       DEC_BINDING = 33, DEC_SET = 34, DEC_OFFSET = 35, SC_UNIFORM = 2, SC_PUSH = 9,
       SC_STORAGE_BUFFER = 12 };

typedef struct reflection {
    uint32_t bindings, push_size;
} reflection;

/* Size in bytes of a scalar or vector type id; 0 if it is something else. */
static uint32_t type_size(const uint32_t *w, size_t n, uint32_t id)
{
    for (size_t i = 5; i < n; i += w[i] >> 16) {
        uint32_t op = w[i] & 0xffff;
        if ((op == OP_TYPE_INT || op == OP_TYPE_FLOAT) && w[i + 1] == id) return w[i + 2] / 8;
        if (op == OP_TYPE_VECTOR && w[i + 1] == id) return w[i + 3] * type_size(w, n, w[i + 2]);
    }
    return 0;
}

/* Size of the push-constant block whose pointer type is ptr. */
static int push_block_size(const uint32_t *w, size_t n, uint32_t ptr, uint32_t *out)
{
    uint32_t strct = 0;
    for (size_t i = 5; i < n; i += w[i] >> 16)
        if ((w[i] & 0xffff) == OP_TYPE_POINTER && w[i + 1] == ptr) strct = w[i + 3];
    for (size_t i = 5; i < n; i += w[i] >> 16) {
        if ((w[i] & 0xffff) != OP_TYPE_STRUCT || w[i + 1] != strct) continue;
        uint32_t nmem = (w[i] >> 16) - 2;
        for (uint32_t m = 0; m < nmem; m++) {
            uint32_t sz = type_size(w, n, w[i + 2 + m]), off = UINT32_MAX;
            for (size_t j = 5; j < n; j += w[j] >> 16)
                if ((w[j] & 0xffff) == OP_MEMBER_DECORATE && w[j + 1] == strct &&
                    w[j + 2] == m && w[j + 3] == DEC_OFFSET)
                    off = w[j + 4];
            if (!sz || off == UINT32_MAX) return -1; /* only scalars and vectors for now */
            if (off + sz > *out) *out = off + sz;
        }
        return 0;
    }
    return -1;
}

static uint32_t decoration(const uint32_t *w, size_t n, uint32_t id, uint32_t dec)
{
    for (size_t i = 5; i < n; i += w[i] >> 16)
        if ((w[i] & 0xffff) == OP_DECORATE && w[i + 1] == id && w[i + 2] == dec) return w[i + 3];
    return UINT32_MAX;
}

static int reflect(const uint32_t *w, size_t n, reflection *r)
{
    r->bindings = r->push_size = 0;
    for (size_t i = 5; i < n; i += w[i] >> 16) {
        if ((w[i] >> 16) == 0) return -1;
        if ((w[i] & 0xffff) != OP_VARIABLE) continue;
        uint32_t type = w[i + 1], id = w[i + 2], sc = w[i + 3];
        if (sc == SC_PUSH && push_block_size(w, n, type, &r->push_size)) return -1;
        if (sc != SC_STORAGE_BUFFER && sc != SC_UNIFORM) continue;
        uint32_t set = decoration(w, n, id, DEC_SET), b = decoration(w, n, id, DEC_BINDING);
        if (set != 0 || b == UINT32_MAX) return -1; /* the runtime binds set 0 only */
        if (b + 1 > r->bindings) r->bindings = b + 1;
    }
    return 0;
}

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
    reflection r;
    if (reflect(words, n, &r)) {
        fprintf(stderr, "%s: cannot reflect bindings/push constants (descriptor set other "
                        "than 0, or a push-constant member that is not a scalar or vector)\n",
                argv[1]);
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
    fprintf(out, "\n};\n\nconst vkt__spirv vkt__spv_%s = {\"%s\", words, sizeof words, %u, %u};\n",
            argv[3], argv[3], r.bindings, r.push_size);
    free(words);
    return fclose(out) == 0 ? 0 : 1;
}
