/* One recurrent layer's constants (the generated LAYERS table). Lengths are padded to multiples of 4. */
typedef struct {
    int32_t hidden, in4, h4, rows4, cell_frac;
    const int8_t *wx; const int32_t *wx_rq; const int8_t *wx_ls; /* weights, {mult, rs - 1} per row, ls or null */
    const int8_t *wh; const int32_t *wh_rq; const int8_t *wh_ls;
    const int32_t *bias, *bias_hn;
} layer_q;
