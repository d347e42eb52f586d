/* LongLLaVA's CPU kernels: Jamba's Mamba mixer (the selective scan, optionally fused with
 * softplus(dt + bias) in front and the D skip and SiLU gate behind, and the depthwise causal
 * conv + SiLU, each continuing from carried state) and the attention layer's softmax attention
 * of a prefill chunk over the KV cache. model/scan.py, model/mamba.py and model/attention.py have
 * the math and the PyTorch twins these must equal; model/cpu_kernels.py builds and calls this file.
 * Dimension letters: docs/glossary.md.
 *
 *     delta_t = softplus(dt_t + dt_bias)                                     (if dt_bias)
 *     h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * x_t        y_t = sum_n C_t[n] h_t[n]
 *     y_t = (y_t + D * x_t) * silu(z_t)                                      (if D, z)
 *
 * Shapes (float32): x, delta, y [b, l, d] contiguous; A [d, n]; B, C [b, l, n] contiguous;
 * z [b, l, d] with strides (z_batch, z_row, 1); state [b, d, n] is read as h before the first
 * token and overwritten with h after the last.
 *
 * Why: in PyTorch every token costs a dispatched op over [b, n, d] and every intermediate a pass
 * over memory. Here a block of SCAN_BLOCK channels keeps its [n, SCAN_BLOCK] state in L1 for the
 * whole sequence and all elementwise math happens in registers. Channel blocks are independent, so
 * threads split them without synchronisation (OpenMP, else pthreads: see run_parallel). C11 plus
 * the vector extensions gcc and clang share (the attention's 16-lane `vf`); the scan's
 * SCAN_BLOCK-wide loops are vectorised by the compiler.
 *
 * The interface is defined once, in model/cpu_kernels.py: the limits both sides rely on and the
 * status codes are passed as -D values from its constants (`kernel_defines`), and its
 * `SIGNATURES` table lists every entry point's parameters by name, in this file's order. Every
 * entry point returns KERNEL_OK, KERNEL_BAD_ARGUMENT (a size out of range: nothing is written)
 * or KERNEL_OUT_OF_MEMORY (a working buffer could not be allocated); Python checks each status.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(SCAN_BLOCK) || !defined(MAX_D_STATE) || !defined(MAX_D_CONV) || !defined(MAX_HEAD_DIM) ||          \
    !defined(ATTENTION_ROWS) || !defined(MAX_ATTENTION_KEYS) || !defined(KERNEL_OK) ||                          \
    !defined(KERNEL_BAD_ARGUMENT) || !defined(KERNEL_OUT_OF_MEMORY)
#error "build through model/cpu_kernels.py, which passes the limits and status codes as -D values"
#endif
/* SCAN_BLOCK: channels per scan block (64: 4 AVX-512 or 16 NEON vectors); MAX_D_STATE: largest
 * d_state (Jamba and LongLLaVA use 16); MAX_D_CONV: largest d_conv (they use 4). */
_Static_assert(SCAN_BLOCK >= 1 && MAX_D_STATE >= 1 && MAX_D_CONV >= 1, "limits must be positive");
_Static_assert(ATTENTION_ROWS == 32, "an attention row block is two 16-lane vectors");
_Static_assert(MAX_HEAD_DIM % 8 == 0, "head_dim is processed 8 columns at a time");
/* Key positions are compared as floats in the causal mask: exact up to 2^24. */
_Static_assert(MAX_ATTENTION_KEYS <= (1 << 24), "key positions must be exact in float32");

#define MAX_THREADS 64
#define CONV_ROWS 64 /* tokens per conv work item */
#define PREFETCH_AHEAD 8 /* tokens the scan fetches ahead */

/* Cephes' expf after range reduction, written once for float and for the attention's vf:
 * declares k = round(v / ln 2) and p = exp(v - k ln 2) (ln 2 in two parts); exp(v) = p * 2^k. */
#define EXP_REDUCE(T, v, k, p)                                                                     \
    T k = v * 1.44269504088896341f;                                                                \
    k = (k + 12582912.0f) - 12582912.0f; /* round to nearest via 1.5 * 2^23 */                      \
    T p;                                                                                           \
    {                                                                                              \
        const T r_ = v - k * 0.693359375f + k * 2.12194440e-4f;                                    \
        p = 1.9875691500e-4f * r_ + 1.3981999507e-3f;                                              \
        p = p * r_ + 8.3334519073e-3f;                                                             \
        p = p * r_ + 4.1665795894e-2f;                                                             \
        p = p * r_ + 1.6666665459e-1f;                                                             \
        p = p * r_ + 5.0000001201e-1f;                                                             \
        p = p * r_ * r_ + r_ + 1.0f;                                                               \
    }

/* exp(v) to ~2 ulp: Cephes' expf polynomial after range reduction, inlinable and vectorisable
 * (libm's expf is neither). v is clamped to [-86, 88]: exp(-86) = 4e-38 stays a normal float
 * (no denormal slow path) and stands for the 0 it approximates. */
static inline float exp_approx(float v) {
    v = v < -86.0f ? -86.0f : (v > 88.0f ? 88.0f : v);
    EXP_REDUCE(float, v, k, p)
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* log(u) for u >= 1 (Cephes' logf). */
static inline float log_approx(float u) {
    int32_t bits;
    memcpy(&bits, &u, sizeof bits);
    float e = (float)(((bits >> 23) & 0xff) - 126);
    bits = (bits & 0x807fffff) | 0x3f000000; /* mantissa in [0.5, 1) */
    float m;
    memcpy(&m, &bits, sizeof m);
    const int small = m < 0.707106781186547524f;
    e = small ? e - 1.0f : e;
    const float x = small ? m + m - 1.0f : m - 1.0f, z = x * x;
    float y = 7.0376836292e-2f;
    y = y * x - 1.1514610310e-1f;
    y = y * x + 1.1676998740e-1f;
    y = y * x - 1.2420140846e-1f;
    y = y * x + 1.4249322787e-1f;
    y = y * x - 1.6668057665e-1f;
    y = y * x + 2.0000714765e-1f;
    y = y * x - 2.4999993993e-1f;
    y = y * x + 3.3333331174e-1f;
    y = y * x * z - 2.12194440e-4f * e - 0.5f * z;
    return x + y + 0.693359375f * e;
}

/* torch's softplus (beta 1, threshold 20). log1p(e) as log(u) * e / (u - 1), u = 1 + e, keeps
 * full relative precision when e is tiny (Goldberg's trick). */
static inline float softplus(float v) {
    /* Every value computed unconditionally, then selected: the loop stays branch-free. */
    const float e = exp_approx(v), u = 1.0f + e, m = u - 1.0f;
    const float log1p_e = m == 0.0f ? e : log_approx(u) * (e / (m == 0.0f ? 1.0f : m));
    return v > 20.0f ? v : log1p_e;
}

static inline float silu(float v) { return v / (1.0f + exp_approx(-v)); }

/* ---- threads ---------------------------------------------------------------------------- */

typedef void (*work_fn)(const void *problem, int64_t item);
typedef struct {
    work_fn fn;
    const void *problem;
    int64_t first, last;
} share;

#ifndef _OPENMP
static void *run_share(void *arg) {
    const share *s = arg;
    for (int64_t item = s->first; item < s->last; item++) s->fn(s->problem, item);
    return NULL;
}
#endif

/* Items [0, items) in contiguous shares. Built with -fopenmp the shares run on an OpenMP team:
 * next to PyTorch's CPU wheels, whose bundled libgomp.so.1 is already loaded and so serves this
 * library too, that is PyTorch's own thread pool, whose workers are still spinning from the
 * previous op; separate pthreads would compete with those spinning workers for the cores
 * (measured ~25 % slower). Without OpenMP, pthreads; a thread that cannot start has its share
 * run here. */
static void run_parallel(work_fn fn, const void *problem, int64_t items, int64_t num_threads) {
    if (num_threads > items) num_threads = items;
    if (num_threads > MAX_THREADS) num_threads = MAX_THREADS;
    if (num_threads < 1) num_threads = 1;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t item = 0; item < items; item++) fn(problem, item);
#else
    share shares[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int64_t i = 0; i < num_threads; i++) {
        shares[i] = (share){fn, problem, items * i / num_threads, items * (i + 1) / num_threads};
        if (i > 0) started[i] = pthread_create(&threads[i], NULL, run_share, &shares[i]) == 0;
    }
    run_share(&shares[0]);
    for (int64_t i = 1; i < num_threads; i++) {
        if (started[i])
            pthread_join(threads[i], NULL);
        else
            run_share(&shares[i]);
    }
#endif
}

/* ---- selective scan ----------------------------------------------------------------------- */

typedef struct {
    const float *x, *delta, *A, *B, *C;
    const float *dt_bias, *D, *z; /* optional (NULL) */
    int64_t z_batch, z_row;
    float *state, *y;
    float *hist; /* optional: every h_t as [b, l, n, d] (for the backward) */
    int64_t b, l, d, n;
} scan_problem;

/* One batch element, channels [c0, c0 + w), all l tokens; called with w == SCAN_BLOCK (a constant
 * after inlining, so the channel loops vectorise without remainders) or the last partial block. */
static inline __attribute__((always_inline)) void scan_block(const scan_problem *p, int64_t bi, int64_t c0,
                                                             int64_t w) {
    const int64_t l = p->l, d = p->d, n = p->n;
    float h[MAX_D_STATE][SCAN_BLOCK], An[MAX_D_STATE][SCAN_BLOCK], bias[SCAN_BLOCK], Dc[SCAN_BLOCK];
    for (int64_t j = 0; j < n; j++)
        for (int64_t c = 0; c < w; c++) {
            h[j][c] = p->state[(bi * d + c0 + c) * n + j];
            An[j][c] = p->A[(c0 + c) * n + j];
        }
    for (int64_t c = 0; c < w; c++) {
        bias[c] = p->dt_bias ? p->dt_bias[c0 + c] : 0.0f;
        Dc[c] = p->D ? p->D[c0 + c] : 0.0f;
    }
    const float *x = p->x + bi * l * d + c0, *delta = p->delta + bi * l * d + c0;
    const float *B = p->B + bi * l * n, *C = p->C + bi * l * n;
    const float *z = p->z ? p->z + bi * p->z_batch + c0 : NULL;
    float *y = p->y + bi * l * d + c0;
    for (int64_t t = 0; t < l; t++) {
        float dt[SCAN_BLOCK], dx[SCAN_BLOCK], acc[SCAN_BLOCK];
        if (t + PREFETCH_AHEAD < l) /* rows are d apart: a page each, beyond the hardware prefetcher */
            for (int64_t c = 0; c < w; c += 16) {
                __builtin_prefetch(x + (t + PREFETCH_AHEAD) * d + c);
                __builtin_prefetch(delta + (t + PREFETCH_AHEAD) * d + c);
                if (z) __builtin_prefetch(z + (t + PREFETCH_AHEAD) * p->z_row + c);
                __builtin_prefetch(y + (t + PREFETCH_AHEAD) * d + c, 1);
            }
        if (p->dt_bias)
            for (int64_t c = 0; c < w; c++) dt[c] = softplus(delta[t * d + c] + bias[c]);
        else
            for (int64_t c = 0; c < w; c++) dt[c] = delta[t * d + c];
        for (int64_t c = 0; c < w; c++) {
            dx[c] = dt[c] * x[t * d + c];
            acc[c] = 0.0f;
        }
        for (int64_t j = 0; j < n; j++) {
            const float bj = B[t * n + j], cj = C[t * n + j];
            for (int64_t c = 0; c < w; c++) {
                const float hj = exp_approx(dt[c] * An[j][c]) * h[j][c] + dx[c] * bj;
                h[j][c] = hj;
                acc[c] += cj * hj;
            }
            if (p->hist) memcpy(p->hist + ((bi * l + t) * n + j) * d + c0, h[j], w * sizeof(float));
        }
        if (z)
            for (int64_t c = 0; c < w; c++) acc[c] = (acc[c] + Dc[c] * x[t * d + c]) * silu(z[t * p->z_row + c]);
        else if (p->D)
            for (int64_t c = 0; c < w; c++) acc[c] += Dc[c] * x[t * d + c];
        for (int64_t c = 0; c < w; c++) y[t * d + c] = acc[c];
    }
    for (int64_t j = 0; j < n; j++)
        for (int64_t c = 0; c < w; c++) p->state[(bi * d + c0 + c) * n + j] = h[j][c];
}

static void scan_item(const void *problem, int64_t item) {
    const scan_problem *p = problem;
    const int64_t blocks = (p->d + SCAN_BLOCK - 1) / SCAN_BLOCK;
    const int64_t bi = item / blocks, c0 = (item % blocks) * SCAN_BLOCK;
    if (c0 + SCAN_BLOCK <= p->d)
        scan_block(p, bi, c0, SCAN_BLOCK);
    else
        scan_block(p, bi, c0, p->d - c0);
}

/* The sizes every scan entry point takes are in range: KERNEL_BAD_ARGUMENT otherwise. */
static int check_scan_sizes(int64_t b, int64_t l, int64_t d, int64_t n) {
    return b < 0 || l < 0 || d < 0 || n < 0 || n > MAX_D_STATE ? KERNEL_BAD_ARGUMENT : KERNEL_OK;
}

/* KERNEL_BAD_ARGUMENT if d_state exceeds MAX_D_STATE or a size is negative (nothing is written).
 * dt_bias, D and z may be NULL (z only with D). */
int selective_scan_f32(const float *x, const float *delta, const float *A, const float *B, const float *C,
                       const float *dt_bias, const float *D, const float *z, int64_t z_batch, int64_t z_row,
                       float *state, float *y, int64_t b, int64_t l, int64_t d, int64_t n, int64_t num_threads) {
    if (check_scan_sizes(b, l, d, n) != KERNEL_OK) return KERNEL_BAD_ARGUMENT;
    const scan_problem p = {x, delta, A, B, C, dt_bias, D, z, z_batch, z_row, state, y, NULL, b, l, d, n};
    run_parallel(scan_item, &p, b * ((d + SCAN_BLOCK - 1) / SCAN_BLOCK), num_threads);
    return KERNEL_OK;
}

/* ---- selective scan for training: forward keeping every state, and its backward ------------ */

/* The plain scan (no softplus, skip or gate) that also writes every h_t to hist [b, l, n, d].
 * Statuses as selective_scan_f32. */
int selective_scan_hist_f32(const float *x, const float *delta, const float *A, const float *B, const float *C,
                            float *state, float *y, float *hist, int64_t b, int64_t l, int64_t d, int64_t n,
                            int64_t num_threads) {
    if (check_scan_sizes(b, l, d, n) != KERNEL_OK) return KERNEL_BAD_ARGUMENT;
    const scan_problem p = {x, delta, A, B, C, NULL, NULL, NULL, 0, 0, state, y, hist, b, l, d, n};
    run_parallel(scan_item, &p, b * ((d + SCAN_BLOCK - 1) / SCAN_BLOCK), num_threads);
    return KERNEL_OK;
}

typedef struct {
    const float *x, *delta, *A, *B, *C, *state0, *hist, *dy, *dlast; /* dlast optional */
    float *dx, *ddelta, *dA, *dB, *dC, *dstate;
    int64_t b, l, d, n;
} scan_grad_problem;

/* Sum of v[0..w) in 16 lanes, so the compiler vectorises it without reassociating floats. */
static inline float block_sum(const float *v, int64_t w) {
    float lanes[16] = {0.0f};
    int64_t c = 0;
    for (; c + 16 <= w; c += 16)
        for (int i = 0; i < 16; i++) lanes[i] += v[c + i];
    float s = 0.0f;
    for (; c < w; c++) s += v[c];
    for (int i = 0; i < 16; i++) s += lanes[i];
    return s;
}

/* Reverse-time recurrence for one batch element and channel block (model/scan.py's
 * _DifferentiableScan, same notation): G_t = C_t dy_t + exp(delta_{t+1} A) G_{t+1}, then
 *   dlog = G_t h_{t-1} exp(delta_t A):  dA += dlog delta_t,  ddelta_t = sum_n dlog A + (sum_n G_t B_t) x_t,
 *   dx_t = (sum_n G_t B_t) delta_t,  dB_t = sum_d G_t delta_t x_t,  dC_t = sum_d h_t dy_t,
 * and dstate = exp(delta_0 A) G_0. dA [b, d, n] is per batch element; dB and dC [blocks, b, l, n]
 * are per channel block (sums over d cross blocks): the caller adds those up. */
static inline __attribute__((always_inline)) void scan_grad_block(const scan_grad_problem *p, int64_t bi,
                                                                  int64_t blk, int64_t c0, int64_t w) {
    const int64_t l = p->l, d = p->d, n = p->n;
    float G[MAX_D_STATE][SCAN_BLOCK], An[MAX_D_STATE][SCAN_BLOCK];
    float dA[MAX_D_STATE][SCAN_BLOCK], h0[MAX_D_STATE][SCAN_BLOCK];
    for (int64_t j = 0; j < n; j++)
        for (int64_t c = 0; c < w; c++) {
            const int64_t at = (bi * d + c0 + c) * n + j;
            G[j][c] = p->dlast ? p->dlast[at] : 0.0f;
            h0[j][c] = p->state0[at];
            An[j][c] = p->A[(c0 + c) * n + j];
            dA[j][c] = 0.0f;
        }
    const float *x = p->x + bi * l * d + c0, *delta = p->delta + bi * l * d + c0, *dy = p->dy + bi * l * d + c0;
    const float *B = p->B + bi * l * n, *C = p->C + bi * l * n;
    const float *hist = p->hist + bi * l * n * d + c0;
    float *dx = p->dx + bi * l * d + c0, *ddelta = p->ddelta + bi * l * d + c0;
    float *dB = p->dB + (blk * p->b + bi) * l * n, *dC = p->dC + (blk * p->b + bi) * l * n;
    for (int64_t t = l - 1; t >= 0; t--) {
        float dt[SCAN_BLOCK], xdt[SCAN_BLOCK], gy[SCAN_BLOCK], GB[SCAN_BLOCK], dlog_A[SCAN_BLOCK];
        float tb[SCAN_BLOCK], tc[SCAN_BLOCK];
        for (int64_t c = 0; c < w; c++) {
            dt[c] = delta[t * d + c];
            xdt[c] = dt[c] * x[t * d + c];
            gy[c] = dy[t * d + c];
            GB[c] = 0.0f;
            dlog_A[c] = 0.0f;
        }
        for (int64_t j = 0; j < n; j++) {
            const float bj = B[t * n + j], cj = C[t * n + j];
            const float *h_t = hist + (t * n + j) * d, *h_prev = t > 0 ? hist + ((t - 1) * n + j) * d : h0[j];
            for (int64_t c = 0; c < w; c++) {
                const float a = exp_approx(dt[c] * An[j][c]);
                const float g = G[j][c] + cj * gy[c];
                const float dlog = g * h_prev[c] * a;
                dA[j][c] += dlog * dt[c];
                dlog_A[c] += dlog * An[j][c];
                GB[c] += g * bj;
                tb[c] = g * xdt[c];
                tc[c] = h_t[c] * gy[c];
                G[j][c] = a * g;
            }
            dB[t * n + j] = block_sum(tb, w);
            dC[t * n + j] = block_sum(tc, w);
        }
        for (int64_t c = 0; c < w; c++) {
            ddelta[t * d + c] = dlog_A[c] + GB[c] * x[t * d + c];
            dx[t * d + c] = GB[c] * dt[c];
        }
    }
    for (int64_t j = 0; j < n; j++)
        for (int64_t c = 0; c < w; c++) {
            const int64_t at = (bi * d + c0 + c) * n + j;
            p->dstate[at] = G[j][c];
            p->dA[at] = dA[j][c];
        }
}

static void scan_grad_item(const void *problem, int64_t item) {
    const scan_grad_problem *p = problem;
    const int64_t blocks = (p->d + SCAN_BLOCK - 1) / SCAN_BLOCK;
    const int64_t bi = item / blocks, blk = item % blocks, c0 = blk * SCAN_BLOCK;
    if (c0 + SCAN_BLOCK <= p->d)
        scan_grad_block(p, bi, blk, c0, SCAN_BLOCK);
    else
        scan_grad_block(p, bi, blk, c0, p->d - c0);
}

/* Gradients of selective_scan_hist_f32 (state0: the state before the first token, [b, d, n];
 * hist: what the forward wrote; dlast: gradient of the final state or NULL). Writes dx, ddelta
 * [b, l, d], dA [b, d, n], dB, dC [blocks, b, l, n] with blocks = ceil(d / SCAN_BLOCK), dstate [b, d, n]. */
int selective_scan_bwd_f32(const float *x, const float *delta, const float *A, const float *B, const float *C,
                           const float *state0, const float *hist, const float *dy, const float *dlast, float *dx,
                           float *ddelta, float *dA, float *dB, float *dC, float *dstate, int64_t b, int64_t l,
                           int64_t d, int64_t n, int64_t num_threads) {
    if (check_scan_sizes(b, l, d, n) != KERNEL_OK) return KERNEL_BAD_ARGUMENT;
    const scan_grad_problem p = {x, delta, A, B, C, state0, hist, dy, dlast, dx, ddelta, dA, dB, dC, dstate,
                                 b, l, d, n};
    run_parallel(scan_grad_item, &p, b * ((d + SCAN_BLOCK - 1) / SCAN_BLOCK), num_threads);
    return KERNEL_OK;
}

/* ---- depthwise causal conv + SiLU ------------------------------------------------------------ */

typedef struct {
    const float *x, *tail, *w, *bias; /* w: [k, d] (tap-major), bias optional */
    int64_t x_batch, x_row;
    float *out;
    int64_t b, l, d, k;
} conv_problem;

/* out[t] = silu(bias + sum_j w[j] * xp[t + j]) where xp = tail (k-1 rows) ++ x. */
static void conv_item(const void *problem, int64_t item) {
    const conv_problem *p = problem;
    const int64_t row_blocks = (p->l + CONV_ROWS - 1) / CONV_ROWS;
    const int64_t bi = item / row_blocks, t0 = (item % row_blocks) * CONV_ROWS;
    const int64_t t1 = t0 + CONV_ROWS < p->l ? t0 + CONV_ROWS : p->l, d = p->d, k = p->k;
    for (int64_t t = t0; t < t1; t++) {
        const float *rows[MAX_D_CONV];
        for (int64_t j = 0; j < k; j++) {
            const int64_t i = t + j - (k - 1); /* index into x; negative reads the tail */
            rows[j] = i < 0 ? p->tail + (bi * (k - 1) + (k - 1) + i) * d : p->x + bi * p->x_batch + i * p->x_row;
        }
        float *out = p->out + (bi * p->l + t) * d;
        for (int64_t c = 0; c < d; c++) out[c] = p->bias ? p->bias[c] : 0.0f;
        for (int64_t j = 0; j < k; j++)
            for (int64_t c = 0; c < d; c++) out[c] += p->w[j * d + c] * rows[j][c];
        for (int64_t c = 0; c < d; c++) out[c] = silu(out[c]);
    }
}

/* KERNEL_BAD_ARGUMENT if d_conv k is outside 1..MAX_D_CONV or a size is negative (nothing is written). */
int causal_conv_silu_f32(const float *x, int64_t x_batch, int64_t x_row, const float *tail, const float *w,
                         const float *bias, float *out, int64_t b, int64_t l, int64_t d, int64_t k,
                         int64_t num_threads) {
    if (k < 1 || k > MAX_D_CONV || b < 0 || l < 0 || d < 0) return KERNEL_BAD_ARGUMENT;
    const conv_problem p = {x, tail, w, bias, x_batch, x_row, out, b, l, d, k};
    run_parallel(conv_item, &p, b * ((l + CONV_ROWS - 1) / CONV_ROWS), num_threads);
    return KERNEL_OK;
}

/* ---- attention ------------------------------------------------------------------------------
 * Softmax attention of query rows over keys, optionally bottom-right causal, FlashAttention's
 * online softmax in one pass (no score matrix in memory). Rows are vectorised 16 to a `vf`: a
 * block of ATTENTION_ROWS query rows holds its queries transposed ([hd][rows]) and its running max,
 * sum and output in registers or L1, and for every key computes 32 scores at once by FMAs of
 * broadcast key elements; the scores' exp, and P·V by FMAs of broadcast value elements. A work
 * item is ATT_BLOCKS such row blocks of one head, which take each ATT_KEYS-key block in turn
 * while it is in cache, so K and V stream from memory once per ATT_BLOCKS · ATTENTION_ROWS rows.
 *
 * q [heads, rows, hd] (row stride q_row, head stride q_head), k and v [heads, keys, hd] alike,
 * unit stride along hd; out [heads, rows, hd] and lse [heads, rows] contiguous; scores are
 * scaled by `scale`. causal_len 0: every row sees every key. causal_len l > 0: row r is the
 * query at position keys - l + (r mod l) (g·l rows are g query heads of one KV head, folded) and
 * sees the keys up to its own position. */

typedef float vf __attribute__((vector_size(64)));   /* 16 lanes: one AVX-512 register, two AVX2 */
typedef int32_t vi __attribute__((vector_size(64)));

#define ATT_BLOCKS 8 /* row blocks of ATTENTION_ROWS (two vf) per work item */
#define ATT_KEYS 64  /* keys per block */

static inline vf vsplat(float x) { return (vf){0} + x; }
static inline vf vselect(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

/* exp_approx on 16 lanes (same polynomial; the argument is at most 0 here, clamped below). */
static inline vf vexp(vf v) {
    v = vselect(v < vsplat(-86.0f), vsplat(-86.0f), v);
    EXP_REDUCE(vf, v, k, p)
    const vi bits = (__builtin_convertvector(k, vi) + 127) << 23;
    return p * (vf)bits;
}

typedef struct {
    const float *q, *k, *v;
    int64_t q_head, q_row, k_head, k_row, v_head, v_row;
    float *out, *lse;
    int64_t rows, keys, hd, causal_len;
    float scale;
    int failed; /* set by an item whose buffers could not be allocated */
} attention_problem;

typedef struct {
    vf m[2], l[2];    /* running max and sum of exp per row */
    vf last[2];       /* causal: the last key each row sees, as a float (exact below 2^24) */
    float last_min, last_max;
    int64_t r0, count;
} row_block;

/* Scores of one row block against keys [k0, k0 + kb), into s[j][2]. */
static inline void attention_scores(const attention_problem *p, const vf *qT, const float *k, int64_t k0,
                                    int64_t kb, vf (*s)[2]) {
    const int64_t hd = p->hd;
    int64_t j0 = 0;
    for (; j0 + 8 <= kb; j0 += 8) {
        vf a[8][2];
        for (int jj = 0; jj < 8; jj++) a[jj][0] = a[jj][1] = vsplat(0.0f);
        const float *kr = k + (k0 + j0) * p->k_row;
        for (int64_t d = 0; d < hd; d++) {
            const vf x0 = qT[2 * d], x1 = qT[2 * d + 1];
            for (int jj = 0; jj < 8; jj++) {
                const float kv = kr[jj * p->k_row + d];
                a[jj][0] += x0 * kv;
                a[jj][1] += x1 * kv;
            }
        }
        for (int jj = 0; jj < 8; jj++) s[j0 + jj][0] = a[jj][0], s[j0 + jj][1] = a[jj][1];
    }
    for (; j0 < kb; j0++) {
        vf a0 = vsplat(0.0f), a1 = a0;
        const float *kr = k + (k0 + j0) * p->k_row;
        for (int64_t d = 0; d < hd; d++) a0 += qT[2 * d] * kr[d], a1 += qT[2 * d + 1] * kr[d];
        s[j0][0] = a0, s[j0][1] = a1;
    }
}

/* Online-softmax update of one row block with the scores s of keys [k0, k0 + kb), then acc += P·V. */
static inline void attention_update(const attention_problem *p, row_block *rb, vf *accT, const float *v, int64_t k0,
                                    int64_t kb, vf (*s)[2]) {
    const int64_t hd = p->hd;
    const int masked = p->causal_len > 0 && (float)(k0 + kb - 1) > rb->last_min;
    vf n0 = rb->m[0], n1 = rb->m[1];
    for (int64_t j = 0; j < kb; j++) {
        if (masked) {
            const vf key = vsplat((float)(k0 + j)), minus_inf = vsplat(-INFINITY);
            s[j][0] = vselect(key > rb->last[0], minus_inf, s[j][0]);
            s[j][1] = vselect(key > rb->last[1], minus_inf, s[j][1]);
        }
        n0 = vselect(s[j][0] > n0, s[j][0], n0);
        n1 = vselect(s[j][1] > n1, s[j][1], n1);
    }
    vf s0 = vsplat(0.0f), s1 = s0;
    for (int64_t j = 0; j < kb; j++) {
        vf e0 = vexp(s[j][0] - n0), e1 = vexp(s[j][1] - n1);
        if (masked) { /* exactly 0 for hidden keys (the clamped exp would leave 4e-38) */
            const vf key = vsplat((float)(k0 + j)), zero = vsplat(0.0f);
            e0 = vselect(key > rb->last[0], zero, e0);
            e1 = vselect(key > rb->last[1], zero, e1);
        }
        s[j][0] = e0, s[j][1] = e1;
        s0 += e0, s1 += e1;
    }
    const vf f0 = vexp(rb->m[0] - n0), f1 = vexp(rb->m[1] - n1); /* first block: exp(-inf) ~ 0 */
    rb->l[0] = rb->l[0] * f0 + s0, rb->l[1] = rb->l[1] * f1 + s1;
    rb->m[0] = n0, rb->m[1] = n1;
    for (int64_t d0 = 0; d0 < hd; d0 += 8) {
        vf a[8][2];
        for (int dd = 0; dd < 8; dd++) a[dd][0] = accT[2 * (d0 + dd)] * f0, a[dd][1] = accT[2 * (d0 + dd) + 1] * f1;
        const float *vr = v + k0 * p->v_row + d0;
        for (int64_t j = 0; j < kb; j++) {
            const vf p0 = s[j][0], p1 = s[j][1];
            for (int dd = 0; dd < 8; dd++) {
                const float vv = vr[j * p->v_row + dd];
                a[dd][0] += p0 * vv;
                a[dd][1] += p1 * vv;
            }
        }
        for (int dd = 0; dd < 8; dd++) accT[2 * (d0 + dd)] = a[dd][0], accT[2 * (d0 + dd) + 1] = a[dd][1];
    }
}

static void attention_item(const void *problem, int64_t item) {
    attention_problem *p = (attention_problem *)problem;
    const int64_t per_item = ATTENTION_ROWS * ATT_BLOCKS, items_per_head = (p->rows + per_item - 1) / per_item;
    const int64_t head = item / items_per_head, first = (item % items_per_head) * per_item, hd = p->hd;
    const int64_t nb = (p->rows - first + ATTENTION_ROWS - 1) / ATTENTION_ROWS < ATT_BLOCKS
                           ? (p->rows - first + ATTENTION_ROWS - 1) / ATTENTION_ROWS : ATT_BLOCKS;
    vf *qT = aligned_alloc(64, (size_t)(2 * nb * hd) * sizeof(vf)); /* [nb][hd][2] */
    vf *accT = aligned_alloc(64, (size_t)(2 * nb * hd) * sizeof(vf));
    if (!qT || !accT) {
        free(qT), free(accT);
        p->failed = 1;
        return;
    }
    const float *k = p->k + head * p->k_head, *v = p->v + head * p->v_head;
    row_block blocks[ATT_BLOCKS];
    float tmp[ATTENTION_ROWS];
    int64_t keys_needed = 0;
    for (int64_t b = 0; b < nb; b++) {
        row_block *rb = &blocks[b];
        rb->r0 = first + b * ATTENTION_ROWS;
        rb->count = p->rows - rb->r0 < ATTENTION_ROWS ? p->rows - rb->r0 : ATTENTION_ROWS;
        const float *q = p->q + head * p->q_head + rb->r0 * p->q_row;
        for (int64_t d = 0; d < hd; d++) {
            for (int64_t r = 0; r < ATTENTION_ROWS; r++) tmp[r] = r < rb->count ? q[r * p->q_row + d] * p->scale : 0.0f;
            memcpy(&qT[(b * hd + d) * 2], tmp, sizeof tmp);
            accT[(b * hd + d) * 2] = accT[(b * hd + d) * 2 + 1] = vsplat(0.0f);
        }
        rb->m[0] = rb->m[1] = vsplat(-INFINITY);
        rb->l[0] = rb->l[1] = vsplat(0.0f);
        rb->last_min = (float)p->keys, rb->last_max = 0.0f;
        for (int64_t r = 0; r < ATTENTION_ROWS; r++) {
            /* padding rows (r >= count) copy the last real row's limit: same keys, discarded */
            const int64_t row = rb->r0 + (r < rb->count ? r : rb->count - 1);
            const int64_t last = p->causal_len ? p->keys - p->causal_len + row % p->causal_len : p->keys - 1;
            tmp[r] = (float)last;
            rb->last_min = tmp[r] < rb->last_min ? tmp[r] : rb->last_min;
            rb->last_max = tmp[r] > rb->last_max ? tmp[r] : rb->last_max;
        }
        memcpy(rb->last, tmp, sizeof tmp);
        keys_needed = (int64_t)rb->last_max + 1 > keys_needed ? (int64_t)rb->last_max + 1 : keys_needed;
    }
    vf s[ATT_KEYS][2];
    for (int64_t k0 = 0; k0 < keys_needed; k0 += ATT_KEYS) {
        const int64_t kb = keys_needed - k0 < ATT_KEYS ? keys_needed - k0 : ATT_KEYS;
        for (int64_t b = 0; b < nb; b++) {
            if ((float)k0 > blocks[b].last_max) continue; /* every key of the block is in these rows' future */
            attention_scores(p, &qT[b * hd * 2], k, k0, kb, s);
            attention_update(p, &blocks[b], &accT[b * hd * 2], v, k0, kb, s);
        }
    }
    for (int64_t b = 0; b < nb; b++) {
        const row_block *rb = &blocks[b];
        float sums[ATTENTION_ROWS], maxes[ATTENTION_ROWS];
        memcpy(sums, rb->l, sizeof sums);
        memcpy(maxes, rb->m, sizeof maxes);
        float *out = p->out + (head * p->rows + rb->r0) * hd;
        for (int64_t d = 0; d < hd; d++) {
            memcpy(tmp, &accT[(b * hd + d) * 2], sizeof tmp);
            for (int64_t r = 0; r < rb->count; r++) out[r * hd + d] = tmp[r] / sums[r];
        }
        for (int64_t r = 0; r < rb->count; r++) p->lse[head * p->rows + rb->r0 + r] = maxes[r] + logf(sums[r]);
    }
    free(qT), free(accT);
}

/* KERNEL_BAD_ARGUMENT if hd is not a multiple of 8 up to MAX_HEAD_DIM, keys is outside
 * 1..MAX_ATTENTION_KEYS, causal_len does not fit or a size is negative (nothing written);
 * KERNEL_OUT_OF_MEMORY if an item's buffers could not be allocated. */
int attention_f32(const float *q, int64_t q_head, int64_t q_row, const float *k, int64_t k_head, int64_t k_row,
                  const float *v, int64_t v_head, int64_t v_row, float *out, float *lse, int64_t heads, int64_t rows,
                  int64_t keys, int64_t hd, int64_t causal_len, float scale, int64_t num_threads) {
    if (hd % 8 || hd < 8 || hd > MAX_HEAD_DIM || keys < 1 || keys > MAX_ATTENTION_KEYS || causal_len < 0 ||
        causal_len > keys || heads < 0 || rows < 0)
        return KERNEL_BAD_ARGUMENT;
    attention_problem p = {q, k, v, q_head, q_row, k_head, k_row, v_head, v_row, out, lse,
                           rows, keys, hd, causal_len, scale, 0};
    const int64_t per_item = ATTENTION_ROWS * ATT_BLOCKS;
    run_parallel(attention_item, &p, heads * ((rows + per_item - 1) / per_item), num_threads);
    return p.failed ? KERNEL_OUT_OF_MEMORY : KERNEL_OK;
}

/* ---- the build's constants ---------------------------------------------------------------- */

#define LIMIT(name) {#name, name}
static const struct {
    const char *name;
    int64_t value;
} LIMITS[] = {LIMIT(SCAN_BLOCK),        LIMIT(MAX_D_STATE),     LIMIT(MAX_D_CONV),
              LIMIT(MAX_HEAD_DIM),      LIMIT(ATTENTION_ROWS),  LIMIT(MAX_ATTENTION_KEYS),
              LIMIT(KERNEL_OK),         LIMIT(KERNEL_BAD_ARGUMENT), LIMIT(KERNEL_OUT_OF_MEMORY)};

/* The value this library was built with for the constant `name` (one of the -D names above) into
 * *value; KERNEL_BAD_ARGUMENT for a name it does not have. */
int kernel_limit(const char *name, int64_t *value) {
    for (size_t i = 0; i < sizeof LIMITS / sizeof LIMITS[0]; i++)
        if (strcmp(name, LIMITS[i].name) == 0) {
            *value = LIMITS[i].value;
            return KERNEL_OK;
        }
    return KERNEL_BAD_ARGUMENT;
}
