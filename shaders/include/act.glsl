// Activation functions of act_fwd.comp / act_bwd.comp (spec constant 2 ACT).
// GELU, tanh form: g(x) = x/2 · (1 + tanh(u)), u = k (x + a x³),
// k = sqrt(2/π), a = 0.044715;  g'(x) = (1 + t)/2 + x/2 (1 - t²) k (1 + 3a x²).
#ifndef VKT_ACT_GLSL
#define VKT_ACT_GLSL

layout(constant_id = 2) const uint ACT = 0; // 0 ReLU, 1 GELU

const float GELU_K = 0.7978845608028654, GELU_A = 0.044715;

// tanh through exp, saturating cleanly: some drivers' tanh returns NaN for
// large |u| (exp overflow inside); here exp -> inf gives exactly ±1.
float safe_tanh(float u)
{
    float e = exp(-2.0 * abs(u));
    float t = (1.0 - e) / (1.0 + e);
    return u < 0.0 ? -t : t;
}

float act_f(float x)
{
    if (ACT == 0u) return max(x, 0.0);
    float t = safe_tanh(GELU_K * (x + GELU_A * x * x * x));
    return 0.5 * x * (1.0 + t);
}

float act_df(float x)
{
    if (ACT == 0u) return x > 0.0 ? 1.0 : 0.0;
    float t = safe_tanh(GELU_K * (x + GELU_A * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_A * x * x);
}

#endif
