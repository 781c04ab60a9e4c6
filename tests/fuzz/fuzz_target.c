/* fuzz_target.c: libFuzzer target for one generated rnn-edge C library (export/c).
 *
 * Built by tests/fuzz/c_fuzz.py with clang -fsanitize=fuzzer,address,undefined for a random model:
 *   -DFUZZ_PREFIX=<prefix> -DFUZZ_HEADER="<prefix>.h" -DFUZZ_INT8=0|1
 * Input bytes: [mode][frames...]; the frames are int8 (int8 library) or float32 bit patterns
 * (float library: NaN, Inf, denormals and huge values included), at most MAX_FUZZ_STEPS of them.
 * Everything the library touches lives in exact-size heap blocks, so AddressSanitizer reports any
 * access past the frames, the state or the scores; UBSan aborts on any signed overflow, bad shift
 * or misaligned access. Checked properties:
 *   1. <prefix>_run(x, steps) == <prefix>_init + <prefix>_step per frame (scores and state, bit for bit);
 *   2. the length argument: steps <= 0 reads no frame (x = NULL) and writes no score;
 *   3. <prefix>_reset zeroes the whole state.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include FUZZ_HEADER

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(FUZZ_PREFIX, name)
#define STATE CAT(FUZZ_PREFIX, _state)
#define MAX_FUZZ_STEPS 64

#if FUZZ_INT8
typedef int8_t frame_t;
typedef int32_t score_t;
#else
typedef float frame_t;
typedef float score_t;
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int32_t info[4];
    size_t c, k, steps, t, state_bytes;
    uint8_t mode;
    frame_t *x;
    STATE *s1, *s2;
    score_t *a, *b;
    unsigned char *zero;

    if (size < 1)
        return 0;
    FN(_info)(info);
    c = (size_t)info[0];
    k = (size_t)info[1];
    mode = data[0];
    data++;
    size--;
    steps = size / (c * sizeof(frame_t));
    if (steps > MAX_FUZZ_STEPS)
        steps = MAX_FUZZ_STEPS;

    x = (frame_t *)malloc(steps ? steps * c * sizeof(frame_t) : 1);
    if (steps)
        memcpy(x, data, steps * c * sizeof(frame_t));
    state_bytes = FN(_state_size)();
    s1 = (STATE *)malloc(state_bytes);
    s2 = (STATE *)malloc(state_bytes);
    zero = (unsigned char *)calloc(1, state_bytes);
    a = (score_t *)malloc(k * sizeof(score_t));
    b = (score_t *)malloc(k * sizeof(score_t));
    memset(s1, 0x5A, state_bytes);
    memset(a, 0x11, k * sizeof(score_t));
    memset(b, 0x11, k * sizeof(score_t));

    /* 1. whole sequence == frame by frame */
    FN(_run)(s1, x, (int32_t)steps, a);
    FN(_init)(s2);
    for (t = 0; t < steps; ++t)
        FN(_step)(s2, x + t * c, b);
    if (memcmp(a, b, k * sizeof(score_t)) != 0 || memcmp(s1, s2, state_bytes) != 0)
        abort();

    /* 2. length argument <= 0: no frame read (NULL), no score written, state reset */
    FN(_run)(s1, NULL, -(int32_t)mode, b);
    if (memcmp(a, b, k * sizeof(score_t)) != 0)
        abort();
    /* 3. reset zeroes everything */
    if (memcmp(s1, zero, state_bytes) != 0)
        abort();

    free(x);
    free(s1);
    free(s2);
    free(zero);
    free(a);
    free(b);
    return 0;
}
