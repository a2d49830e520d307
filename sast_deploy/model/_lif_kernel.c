/* The LIF recurrence of sast_deploy/model/lif.py (LIFRecurrence) as compiled loops: see
 * sast_deploy/model/lif_kernel.py, which compiles this file on first use and calls it with ctypes.
 *
 * Layout: a [T, B, *shape] contiguous tensor is T rows of E = B * prod(shape) elements; element e
 * of a row has threshold theta[e % P] (P = prod(shape), or P = E when the caller expanded theta).
 * Every element is independent over time, so the element range is cut into blocks of BLOCK
 * elements, shared among the threads; a thread runs the whole time loop of its block, with the
 * block's state (u, s, du, dtheta) in local arrays and the inner loop over contiguous elements.
 * The result of an element never depends on the thread count.
 *
 * Rounding: compiled with -ffp-contract=off (no implicit multiply-add fusion) and never -ffast-math,
 * each operation below is one IEEE operation in the tensor's dtype, in the order torch evaluates
 * lif_step and the surrogates (sast_deploy/model/surrogates.py): the forward values are the same bit
 * for bit. Scalars (alpha, k, pi, k/pi, k/2) arrive as doubles and are rounded to the dtype, as
 * torch does with a Python float against a float32 tensor. The torch loop's backward uses add(alpha=)
 * and addcmul, which torch's vectorised CPU kernels evaluate as fused multiply-adds where the CPU has
 * them (AVX2, AVX-512) and as two roundings elsewhere; the backward is therefore compiled both ways
 * (lif_backward, lif_backward_fused) and lif_kernel.py keeps the one whose gradients equal the torch
 * loop's bit for bit on this machine.
 *
 * The file is compiled into one library by including itself: once per dtype (float: _f32, double:
 * _f64), and within each, the backward once per rounding (BW_FUSED 0 and 1).
 */
#ifndef REAL

#include <stdint.h>
#include <string.h>

#define BLOCK 256

#define REAL float
#define FMA __builtin_fmaf
#define FABS __builtin_fabsf
#define SFX(name) name##_f32
#include __FILE__
#undef REAL
#undef FMA
#undef FABS
#undef SFX

#define REAL double
#define FMA __builtin_fma
#define FABS __builtin_fabs
#define SFX(name) name##_f64
#include __FILE__
#undef REAL
#undef FMA
#undef FABS
#undef SFX

int lif_kernel_abi(void) { return 1; }

#elif !defined(BW_NAME) /* the kernels, once per REAL */

/* theta of the block's elements [e0, e0 + n): theta[(e0 + j) % P] */
static void SFX(block_theta)(REAL *th, const REAL *theta, int64_t P, int64_t e0, int64_t n) {
    int64_t c = e0 % P;
    for (int64_t j = 0; j < n; j++) {
        th[j] = theta[c];
        if (++c == P) c = 0;
    }
}

/* Forward over all T steps (STE: hard spikes; or the fast-sigmoid surrogate):
 *   u_t = ((alpha u_{t-1}) + I_t) - (theta s_{t-1});  x_t = u_t - theta  (saved in margins)
 *   ste:          s_t = x_t > 0
 *   fast-sigmoid: s_t = ((k x_t) / (|k x_t| + 1) + 1) * 0.5
 */
void SFX(lif_forward)(int64_t T, int64_t E, int64_t P, const REAL *current, const REAL *theta,
                      double alpha_d, double k_d, int fast_sigmoid, REAL *spikes, REAL *margins,
                      int threads) {
    const REAL alpha = (REAL)alpha_d, k = (REAL)k_d;
    const int64_t nblocks = (E + BLOCK - 1) / BLOCK;
    #pragma omp parallel for num_threads(threads) schedule(static) if(threads > 1)
    for (int64_t b = 0; b < nblocks; b++) {
        REAL u[BLOCK], s[BLOCK], th[BLOCK];
        const int64_t e0 = b * BLOCK, n = (E - e0 < BLOCK) ? E - e0 : BLOCK;
        SFX(block_theta)(th, theta, P, e0, n);
        memset(u, 0, sizeof u);
        memset(s, 0, sizeof s);
        for (int64_t t = 0; t < T; t++) {
            const REAL *restrict I = current + t * E + e0;
            REAL *restrict sp = spikes + t * E + e0, *restrict mg = margins + t * E + e0;
            if (fast_sigmoid) {
                for (int64_t j = 0; j < n; j++) {
                    REAL v = (alpha * u[j] + I[j]) - th[j] * s[j];
                    REAL x = v - th[j];
                    REAL kx = k * x;
                    REAL y = (kx / (FABS(kx) + (REAL)1) + (REAL)1) * (REAL)0.5;
                    u[j] = v; mg[j] = x; sp[j] = y; s[j] = y;
                }
            } else {
                for (int64_t j = 0; j < n; j++) {
                    REAL v = (alpha * u[j] + I[j]) - th[j] * s[j];
                    REAL x = v - th[j];
                    REAL y = x > (REAL)0 ? (REAL)1 : (REAL)0;
                    u[j] = v; mg[j] = x; sp[j] = y; s[j] = y;
                }
            }
        }
    }
}

/* One step of the arctan-surrogate forward, whose atan stays in torch (torch.atan between calls):
 * first finishes the previous step's spikes, prev = atan(k x_{t-1}) -> prev / pi + 0.5 (when prev
 * is not NULL; else s_{t-1} = 0), then
 *   u_t = ((alpha u_{t-1}) + I_t) - (theta s_{t-1});  margin x_t = u_t - theta;  out = k x_t
 * With current == NULL it only finishes prev (after the last step). u: the state, E elements. */
void SFX(lif_arctan_step)(int64_t E, int64_t P, const REAL *current, const REAL *theta, double alpha_d,
                          double k_d, REAL *u, REAL *prev, REAL *margin, REAL *out, int threads) {
    const REAL alpha = (REAL)alpha_d, k = (REAL)k_d, pi = (REAL)3.14159265358979323846;
    const int64_t nblocks = (E + BLOCK - 1) / BLOCK;
    #pragma omp parallel for num_threads(threads) schedule(static) if(threads > 1)
    for (int64_t b = 0; b < nblocks; b++) {
        REAL th[BLOCK];
        const int64_t e0 = b * BLOCK, n = (E - e0 < BLOCK) ? E - e0 : BLOCK;
        REAL *restrict pv = prev ? prev + e0 : 0;
        if (!current) {
            for (int64_t j = 0; j < n; j++) pv[j] = pv[j] / pi + (REAL)0.5;
            continue;
        }
        SFX(block_theta)(th, theta, P, e0, n);
        const REAL *restrict I = current + e0;
        REAL *restrict uu = u + e0, *restrict mg = margin + e0, *restrict o = out + e0;
        if (pv) {
            for (int64_t j = 0; j < n; j++) {
                REAL sp = pv[j] / pi + (REAL)0.5;
                REAL v = (alpha * uu[j] + I[j]) - th[j] * sp;
                REAL x = v - th[j];
                pv[j] = sp; uu[j] = v; mg[j] = x; o[j] = k * x;
            }
        } else {
            for (int64_t j = 0; j < n; j++) {
                REAL v = (alpha * uu[j] + I[j]) - th[j] * (REAL)0;
                REAL x = v - th[j];
                uu[j] = v; mg[j] = x; o[j] = k * x;
            }
        }
    }
}

#define BW_NAME SFX(lif_backward)
#define MADD(a, b, c) ((a) * (b) + (c))
#include __FILE__
#undef BW_NAME
#undef MADD
#define BW_NAME SFX(lif_backward_fused)
#define MADD(a, b, c) FMA(a, b, c)
#include __FILE__
#undef BW_NAME
#undef MADD

#else /* the backward, once per REAL and rounding: MADD(a, b, c) = a b + c, rounded twice or once */

/* Backward through time (LIFRecurrence's docstring), both modes, for t = T-1 .. 0:
 *   a_t = (g_t - theta du_{t+1}) sigma'(x_t);  dtheta -= a_t + du_{t+1} s_t;  du_t = a_t + alpha du_{t+1}
 * each multiply-add as torch's addcmul and add(alpha=) round it (MADD);
 * sigma' as Surrogate.grad computes it (c / d evaluated by torch as reciprocal(d) * c):
 *   arctan:       (1 / (1 + (k x)^2)) * (k / pi)
 *   fast-sigmoid: (1 / (1 + k |x|)^2) * (k / 2)
 * d_current[t] = du_t; neg_d_theta (E elements, or NULL when not wanted) = sum over t of
 * (a_t + du_{t+1} s_t), per element: the caller sums it over the batch and negates it. */
void BW_NAME(int64_t T, int64_t E, int64_t P, const REAL *grad, const REAL *margins,
             const REAL *spikes, const REAL *theta, double alpha_d, double k_d, double c_d,
             int fast_sigmoid, REAL *d_current, REAL *neg_d_theta, int threads) {
    const REAL alpha = (REAL)alpha_d, k = (REAL)k_d, c = (REAL)c_d;
    const int64_t nblocks = (E + BLOCK - 1) / BLOCK;
    #pragma omp parallel for num_threads(threads) schedule(static) if(threads > 1)
    for (int64_t b = 0; b < nblocks; b++) {
        REAL du[BLOCK], dth[BLOCK], th[BLOCK], sg[BLOCK];
        const int64_t e0 = b * BLOCK, n = (E - e0 < BLOCK) ? E - e0 : BLOCK;
        SFX(block_theta)(th, theta, P, e0, n);
        memset(du, 0, sizeof du);
        memset(dth, 0, sizeof dth);
        for (int64_t t = T - 1; t >= 0; t--) {
            const REAL *restrict g = grad + t * E + e0, *restrict x = margins + t * E + e0,
                       *restrict s = spikes + t * E + e0;
            REAL *restrict d = d_current + t * E + e0;
            if (fast_sigmoid) {
                for (int64_t j = 0; j < n; j++) {
                    REAL q = (REAL)1 + k * FABS(x[j]);
                    sg[j] = ((REAL)1 / (q * q)) * c;
                }
            } else {
                for (int64_t j = 0; j < n; j++) {
                    REAL kx = k * x[j];
                    sg[j] = ((REAL)1 / ((REAL)1 + kx * kx)) * c;
                }
            }
            if (neg_d_theta) {
                for (int64_t j = 0; j < n; j++) {
                    REAL a = MADD(-th[j], du[j], g[j]) * sg[j];   /* addcmul(g, theta, du, value=-1) */
                    dth[j] = MADD(du[j], s[j], dth[j] + a);      /* add_(a).addcmul_(du, s) */
                    du[j] = MADD(alpha, du[j], a);               /* add(a, du, alpha=alpha) */
                    d[j] = du[j];
                }
            } else {
                for (int64_t j = 0; j < n; j++) {
                    REAL a = MADD(-th[j], du[j], g[j]) * sg[j];
                    du[j] = MADD(alpha, du[j], a);
                    d[j] = du[j];
                }
            }
        }
        if (neg_d_theta) memcpy(neg_d_theta + e0, dth, (size_t)n * sizeof(REAL));
    }
}

#endif
