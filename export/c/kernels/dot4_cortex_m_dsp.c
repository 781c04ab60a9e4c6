#if PREFIX_USE_DSP
/* SXTB16 with ROR #8: bytes 1 and 3 of v sign-extended into two halfwords. */
PREFIX_INLINE int32_t sxtb16_ror8(int32_t v)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* lo, hi = the two words at p; p += 8 bytes (one LDRD with post-increment; p word-aligned). */
#define PREFIX_LDRD_PI(lo, hi, p) __asm__("ldrd %0, %1, [%2], #8" : "=r"(lo), "=r"(hi), "+r"(p) : : "memory")

/* dot4 (contract in dot4_portable.c) for cores with the DSP extension (Cortex-M4/M7/M33/M55).
 * Per 4 columns (one block), 19 instructions for 16 multiply-accumulates: 1 LDRD of two
 * activation pairs (xa, xb), 2 LDRDs of the 4 rows' weight words, then per row SXTB16 -> (a, b)
 * and SXTB16 ROR 8 -> (c, d), and two SMLADs. The first block starts the sums with SMUAD (no
 * accumulator) instead of zeroing four registers; the rest go two per pass, so the loop's count
 * and branch cost 1 instruction per block (an odd block first, alone). */
PREFIX_INLINE const int8_t *dot4(const int8_t *w, const int16_t *a, int32_t n, int32_t *acc)
{
    int32_t s0, s1, s2, s3, k;
    int32_t xa, xb, w0, w1, w2, w3;      /* packed halfwords / bytes, as ACLE's int16x2_t / int8x4_t */
    PREFIX_LDRD_PI(xa, xb, a);
    PREFIX_LDRD_PI(w0, w1, w);
    PREFIX_LDRD_PI(w2, w3, w);
    s0 = __smlad(sxtb16_ror8(w0), xb, __smuad(__sxtb16(w0), xa));
    s1 = __smlad(sxtb16_ror8(w1), xb, __smuad(__sxtb16(w1), xa));
    s2 = __smlad(sxtb16_ror8(w2), xb, __smuad(__sxtb16(w2), xa));
    s3 = __smlad(sxtb16_ror8(w3), xb, __smuad(__sxtb16(w3), xa));
#define PREFIX_DOT4_BLOCK()                                                                      \
    PREFIX_LDRD_PI(xa, xb, a);                                                                    \
    PREFIX_LDRD_PI(w0, w1, w);                                                                    \
    PREFIX_LDRD_PI(w2, w3, w);                                                                    \
    s0 = __smlad(__sxtb16(w0), xa, s0); s0 = __smlad(sxtb16_ror8(w0), xb, s0);                    \
    s1 = __smlad(__sxtb16(w1), xa, s1); s1 = __smlad(sxtb16_ror8(w1), xb, s1);                    \
    s2 = __smlad(__sxtb16(w2), xa, s2); s2 = __smlad(sxtb16_ror8(w2), xb, s2);                    \
    s3 = __smlad(__sxtb16(w3), xa, s3); s3 = __smlad(sxtb16_ror8(w3), xb, s3)
    k = (n >> 2) - 1;                     /* n >= 4: every layer has at least one column block */
    if (k & 1) {
        PREFIX_DOT4_BLOCK();
    }
    for (k >>= 1; k > 0; --k) {
        PREFIX_DOT4_BLOCK();
        PREFIX_DOT4_BLOCK();
    }
#undef PREFIX_DOT4_BLOCK
    acc[0] = s0; acc[1] = s1; acc[2] = s2; acc[3] = s3;
    return w;
}
#endif
