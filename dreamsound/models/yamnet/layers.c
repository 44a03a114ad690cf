/* YAMNet's first convolution and its depthwise 3x3 layers on the CPU: each convolution with its
 * bias and ReLU, and its input gradient with the ReLU masks applied inside it.
 *
 * Compiled on the user's machine at first use (dreamsound/native.py: cc -O3 -march=native
 * -fopenmp) and called through ctypes from dreamsound/models/yamnet/fused.py, which documents
 * why: in a dream step torch's operators move every activation through memory several times
 * (the convolution, the ReLU, the saved output for the ReLU's backward, the gradient masked by
 * threshold_backward); here a layer reads its input once, writes its output once and keeps one
 * bit per activation for the backward pass.
 *
 * Layout: every map is channels-last, [N][H][W][C] contiguous, C a multiple of 16; weights are
 * [9][C] (tap-major: row ki, column kj at 3 * ki + kj). Masks hold one bit per activation, 16
 * channels per uint16_t word, in the map's order. Padding is TensorFlow's "same": pad_top and
 * pad_left pixels before the map (taps that fall outside read zeros). Each output element is
 * summed by one thread in a fixed order, so results do not depend on the thread count.
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#ifndef __AVX512F__
#error "these kernels need AVX-512 (x86-64); dreamsound falls back to torch's operators"
#endif

#define LANES 16

/* y = relu(conv3x3(a) + bias) with C output channels: a depthwise layer (x_channels == C: each
 * channel its own 3x3 kernel) or the first layer (x_channels == 1: one input channel, C
 * kernels). a = x, or a = relu(x + x_bias) when x_bias is given (x is then the previous
 * layer's output before its bias and ReLU, which are applied here as the values are read).
 * y_mask (optional) receives y > 0; x_mask (optional, depthwise only) receives a > 0. */
void conv3x3_forward(const float *restrict x, int x_channels, const float *restrict x_bias,
                     const float *restrict w, const float *restrict bias, float *restrict y,
                     uint16_t *restrict y_mask, uint16_t *restrict x_mask, int n_threads,
                     int N, int H, int W, int C, int Ho, int Wo, int stride, int pad_top,
                     int pad_left)
{
    const __m512 zero = _mm512_setzero_ps();
    #pragma omp parallel num_threads(n_threads)
    {
        if (x_mask) {
            const size_t words = (size_t)N * H * W * C / LANES;
            #pragma omp for schedule(static) nowait
            for (size_t k = 0; k < words; k++) {
                __m512 v = _mm512_loadu_ps(x + k * LANES);
                if (x_bias)
                    v = _mm512_add_ps(v, _mm512_loadu_ps(x_bias + (k * LANES) % C));
                x_mask[k] = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
            }
        }
        #pragma omp for collapse(2) schedule(static)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < Ho; i++)
                for (int j = 0; j < Wo; j++) {
                    const size_t out = (((size_t)n * Ho + i) * Wo + j) * C;
                    for (int c = 0; c < C; c += LANES) {
                        __m512 acc = _mm512_loadu_ps(bias + c);
                        const __m512 xb = x_bias ? _mm512_loadu_ps(x_bias + c) : zero;
                        for (int ki = 0; ki < 3; ki++) {
                            const int h = stride * i + ki - pad_top;
                            if (h < 0 || h >= H)
                                continue;
                            for (int kj = 0; kj < 3; kj++) {
                                const int v = stride * j + kj - pad_left;
                                if (v < 0 || v >= W)
                                    continue;
                                const size_t at = ((size_t)n * H + h) * W + v;
                                __m512 a = x_channels == 1 ? _mm512_set1_ps(x[at])
                                                           : _mm512_loadu_ps(x + at * C + c);
                                if (x_bias)
                                    a = _mm512_max_ps(_mm512_add_ps(a, xb), zero);
                                acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + (ki * 3 + kj) * C + c), a, acc);
                            }
                        }
                        const __mmask16 positive = _mm512_cmp_ps_mask(acc, zero, _CMP_GT_OQ);
                        _mm512_storeu_ps(y + out + c, _mm512_maskz_mov_ps(positive, acc));
                        if (y_mask)
                            y_mask[(out + c) / LANES] = positive;
                    }
                }
    }
}

/* Channels c..c+15 of the gradient reaching input pixel (n, h, v) through the 3x3 taps that read
 * it, gy * y_mask * w summed over those taps (each tap once: the output pixel whose window puts
 * the pixel under it). */
static inline __m512 tap_sum(const float *restrict gy, const uint16_t *restrict y_mask,
                             const float *restrict w, int n, int h, int v, int c, int C, int Ho,
                             int Wo, int stride, int pad_top, int pad_left)
{
    __m512 acc = _mm512_setzero_ps();
    for (int ki = 0; ki < 3; ki++) {
        const int t = h + pad_top - ki;  /* = stride * i for the output row i */
        if (t < 0 || t % stride || t / stride >= Ho)
            continue;
        for (int kj = 0; kj < 3; kj++) {
            const int u = v + pad_left - kj;
            if (u < 0 || u % stride || u / stride >= Wo)
                continue;
            const size_t o = (((size_t)n * Ho + t / stride) * Wo + u / stride) * C + c;
            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(y_mask[o / LANES], gy + o),
                                  _mm512_loadu_ps(w + (ki * 3 + kj) * C + c), acc);
        }
    }
    return acc;
}

/* The input gradient gx of conv3x3_forward's layer from the gradient gy [N][Ho][Wo][C] of its
 * output, through its ReLU (y_mask). A depthwise layer (x_channels == C) gives gx
 * [N][H][W][C], also through the previous layer's ReLU when x_mask is given; the first layer
 * (x_channels == 1) gives gx [N][H][W], the sum over its C kernels. */
void conv3x3_backward(const float *restrict gy, const uint16_t *restrict y_mask,
                      const float *restrict w, int x_channels,
                      const uint16_t *restrict x_mask, float *restrict gx, int n_threads,
                      int N, int H, int W, int C, int Ho, int Wo, int stride, int pad_top,
                      int pad_left)
{
    #pragma omp parallel for collapse(2) schedule(static) num_threads(n_threads)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int v = 0; v < W; v++) {
                const size_t at = ((size_t)n * H + h) * W + v;
                if (x_channels == 1) {
                    __m512 acc = _mm512_setzero_ps();
                    for (int c = 0; c < C; c += LANES)
                        acc = _mm512_add_ps(acc, tap_sum(gy, y_mask, w, n, h, v, c, C, Ho, Wo,
                                                         stride, pad_top, pad_left));
                    gx[at] = _mm512_reduce_add_ps(acc);
                    continue;
                }
                for (int c = 0; c < C; c += LANES) {
                    __m512 acc = tap_sum(gy, y_mask, w, n, h, v, c, C, Ho, Wo, stride, pad_top,
                                         pad_left);
                    if (x_mask)
                        acc = _mm512_maskz_mov_ps(x_mask[(at * C + c) / LANES], acc);
                    _mm512_storeu_ps(gx + at * C + c, acc);
                }
            }
}
