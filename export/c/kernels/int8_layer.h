/* One recurrent layer's constants (the generated LAYERS table). Lengths are padded to multiples of 4.
 * The biases ride in the requantization words (rq, see requantize): gx = W_ih x + b, gh = W_hh h (+ b_hn).
 * LSTM only: cell_frac, the cell state's format Q(15-cf).cf, and its conversion to the tanh table's
 * Q3.12 as a left then a right shift (cell_up, cell_down; lstm_cell_q.c). */
typedef struct {
    int32_t hidden, in4, h4, rows4, cell_frac, cell_up, cell_down;
    const int8_t *wx; const int32_t *wx_rq; const int8_t *wx_ls; /* weights, {mult, word} per row, ls or null */
    const int8_t *wh; const int32_t *wh_rq; const int8_t *wh_ls;
} layer_q;
