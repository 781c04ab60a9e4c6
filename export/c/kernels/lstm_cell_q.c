/* LSTM cell, element-wise over one layer (gate pre-activations gx + gh in Q3.12,
 * gx = W_i x + b + 32768 with the bias and the tables' origin added by requantize):
 *   i = sigmoid(pre_i), f = sigmoid(pre_f), g = tanh(pre_g), o = sigmoid(pre_o)   (Q0.15)
 *   c' = f * c + i * g         (c in Q(15-cf).cf, saturated to int16)
 *   h' = o * tanh(c')          (Q0.15)                                             */
static void lstm_cell(const layer_q *L, const int32_t *gx, const int32_t *gh, int16_t *h, int16_t *c)
{
    const int32_t H = L->hidden, cf = L->cell_frac;
    int32_t j;
    for (j = 0; j < H; ++j) {
        const int32_t i = lut(SIGMOID_Q15, gx[j] + gh[j]);
        const int32_t f = lut(SIGMOID_Q15, gx[H + j] + gh[H + j]);
        const int32_t g = lut(TANH_Q15, gx[2 * H + j] + gh[2 * H + j]);
        const int32_t o = lut(SIGMOID_Q15, gx[3 * H + j] + gh[3 * H + j]);
        const int32_t cn = sat16(rshift_round(f * c[j], 15) + rshift_round(i * g, 30 - cf));
        /* c' to Q3.12 for the tanh table */
        const int32_t c12 = cf > 12 ? rshift_round(cn, cf - 12) : sat16(cn * (1 << (12 - cf)));
        c[j] = (int16_t)cn;
        h[j] = (int16_t)rshift_round(o * lut(TANH_Q15, c12 + 32768), 15); /* 32768: the table origin */
    }
}
