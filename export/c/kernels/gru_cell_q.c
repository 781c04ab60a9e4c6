/* GRU cell (PyTorch form), element-wise over one layer (gx = W_i x, gh = W_h h, Q3.12):
 *   r = sigmoid(gx_r + gh_r + b_r), z = sigmoid(gx_z + gh_z + b_z)
 *   n = tanh(gx_n + b_in + r * (gh_n + b_hn))
 *   h' = (1 - z) * n + z * h = n + z * (h - n)                     (Q0.15)                    */
static void gru_cell(const layer_q *L, const int32_t *gx, const int32_t *gh, int16_t *h)
{
    const int32_t H = L->hidden;
    const int32_t *b = L->bias;
    int32_t j;
    for (j = 0; j < H; ++j) {
        const int32_t r = lut(SIGMOID_Q15, gx[j] + gh[j] + b[j]);
        const int32_t z = lut(SIGMOID_Q15, gx[H + j] + gh[H + j] + b[H + j]);
        const int32_t hn = gh[2 * H + j] + L->bias_hn[j];
        const int32_t rh = (int32_t)(((int64_t)r * hn + (1 << 14)) >> 15);
        const int32_t n = lut(TANH_Q15, gx[2 * H + j] + b[2 * H + j] + rh);
        h[j] = (int16_t)(n + rshift_round(z * (h[j] - n), 15));
    }
}
