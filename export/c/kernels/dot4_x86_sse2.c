#if PREFIX_USE_SSE2
/* dot4 (contract in dot4_portable.c) on x86-64 with SSE2. Per 4 columns: the group's 16 weight
 * bytes sign-extended to two registers of int16 (rows 0-1, rows 2-3), the 4 activations put in
 * the weights' a c b d order and repeated; PMADDWD multiplies lane by lane and adds neighbouring
 * pairs, so each row's sum is two adjacent lanes. */
PREFIX_INLINE const int8_t *dot4(const int8_t *w, const int16_t *a, int32_t n, int32_t *acc)
{
    __m128i acc01 = _mm_setzero_si128(), acc23 = _mm_setzero_si128();
    int32_t v[8], k;
    for (k = n >> 2; k > 0; --k, a += 4, w += 16) {
        const __m128i wb = _mm_loadu_si128((const __m128i *)(const void *)w);
        const __m128i w01 = _mm_srai_epi16(_mm_unpacklo_epi8(wb, wb), 8);
        const __m128i w23 = _mm_srai_epi16(_mm_unpackhi_epi8(wb, wb), 8);
        const __m128i x = _mm_shufflelo_epi16(_mm_loadl_epi64((const __m128i *)(const void *)a), _MM_SHUFFLE(3, 1, 2, 0));
        const __m128i xx = _mm_unpacklo_epi64(x, x);
        acc01 = _mm_add_epi32(acc01, _mm_madd_epi16(w01, xx));
        acc23 = _mm_add_epi32(acc23, _mm_madd_epi16(w23, xx));
    }
    _mm_storeu_si128((__m128i *)(void *)v, acc01);
    _mm_storeu_si128((__m128i *)(void *)(v + 4), acc23);
    acc[0] = v[0] + v[1]; acc[1] = v[2] + v[3]; acc[2] = v[4] + v[5]; acc[3] = v[6] + v[7];
    return w;
}
#endif
