/* Which dot-product kernel this build uses: at most one PREFIX_USE_<variant> is 1. Defining
 * PREFIX_PORTABLE before compiling forces the portable kernel (dot4_portable.c) everywhere. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__) && !defined(PREFIX_PORTABLE)
#define PREFIX_USE_DSP 1
#else
#define PREFIX_USE_DSP 0
#endif
#if defined(__ARM_ACLE) || defined(__ARM_FEATURE_DSP) || defined(__ARM_FEATURE_SAT)
#include <arm_acle.h>
#endif
/* On x86-64 hosts (SSE2 is part of the base instruction set) the dot products use PMADDWD. */
#if !PREFIX_USE_DSP && defined(__SSE2__) && !defined(PREFIX_PORTABLE)
#define PREFIX_USE_SSE2 1
#include <emmintrin.h>
#else
#define PREFIX_USE_SSE2 0
#endif
/* On 64-bit Arm application cores (Raspberry Pi 3/4/5, aarch64) they use NEON's SMLAL. */
#if !PREFIX_USE_DSP && !PREFIX_USE_SSE2 && defined(__ARM_NEON) && defined(__aarch64__) && !defined(PREFIX_PORTABLE)
#define PREFIX_USE_NEON 1
#include <arm_neon.h>
#else
#define PREFIX_USE_NEON 0
#endif
