// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC'11): a counter-based generator, so any element's random
// bits are a pure function of (counter, key) and need no state.
// src/ops/dropout.c implements the same function in C (vkt__philox); the
// dropout test checks the two bit for bit through the keep decisions.
#ifndef VKT_RNG_GLSL
#define VKT_RNG_GLSL

const uint PHILOX_M0 = 0xD2511F53u, PHILOX_M1 = 0xCD9E8D57u;
const uint PHILOX_W0 = 0x9E3779B9u, PHILOX_W1 = 0xBB67AE85u;

uvec4 philox4x32_10(uvec4 ctr, uvec2 key)
{
    [[unroll]] for (int r = 0; r < 10; r++) {
        uint hi0, lo0, hi1, lo1;
        umulExtended(PHILOX_M0, ctr.x, hi0, lo0);
        umulExtended(PHILOX_M1, ctr.z, hi1, lo1);
        ctr = uvec4(hi1 ^ ctr.y ^ key.x, lo1, hi0 ^ ctr.w ^ key.y, lo0);
        key += uvec2(PHILOX_W0, PHILOX_W1);
    }
    return ctr;
}

#endif
