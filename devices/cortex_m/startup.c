/* startup.c: the minimum a Cortex-M needs before newlib's own startup (rdimon crt0) can run.
 *
 * - A vector table at address 0 (linked with --section-start=.vectors=0 and kept with -u vectors):
 *   rdimon's crt0 has none, and without it the core locks up at reset.
 * - The FPU enabled (CPACR CP10/CP11 full access) before the first floating-point instruction.
 * - Faults end the run through semihosting with exit code 70 instead of hanging silently.
 */
#include <stdint.h>

extern void _start(void);  /* newlib crt0: sets up the stack and heap via semihosting, calls main */
extern void _exit(int);

static uint32_t boot_stack[128];  /* used only until crt0 switches to its own stack */

static void reset_handler(void)
{
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;  /* CPACR: CP10, CP11 full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    _start();
    for (;;) {
    }
}

static void fault_handler(void)
{
    _exit(70);
}

__attribute__((section(".vectors"), used)) void *const vectors[16] = {
    (void *)(boot_stack + 128), /* initial stack pointer */
    (void *)reset_handler,      /* reset */
    (void *)fault_handler,      /* NMI */
    (void *)fault_handler,      /* HardFault */
    (void *)fault_handler,      /* MemManage */
    (void *)fault_handler,      /* BusFault */
    (void *)fault_handler,      /* UsageFault */
    0, 0, 0, 0,
    (void *)fault_handler,      /* SVCall */
    (void *)fault_handler,      /* DebugMon */
    0,
    (void *)fault_handler,      /* PendSV */
    (void *)fault_handler,      /* SysTick */
};
