/* icount_plugin.c: a QEMU TCG plugin that counts guest instructions executed between two addresses.
 *
 * Usage: qemu-system-arm ... -plugin ./libicount.so,begin=0x1234,end=0x1240,out=counts.txt
 * Every time the translation block starting at `begin` (a marker function) executes, counting
 * starts; when the block at `end` executes, the count since `begin` is appended to `out`, one line
 * per region. Counts are exact: each executed block adds its instruction count (blocks run to
 * completion here: no interrupts are enabled inside the measured region).
 *
 * Debian's QEMU (7.2) supports plugins but ships no qemu-plugin.h, so the few declarations of the
 * version-1 plugin API that this file needs are written out below (from QEMU's include/qemu/qemu-plugin.h).
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the subset of QEMU's plugin API (version 1) used here ---- */
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* only passed through */
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* ---- the counter ---- */
#define FLAG_BEGIN ((uint64_t)1 << 40)
#define FLAG_END ((uint64_t)1 << 41)

static uint64_t begin_addr, end_addr, count;
static int counting;
static FILE *out;

static void on_exec(unsigned int vcpu, void *udata)
{
    const uint64_t u = (uint64_t)(uintptr_t)udata;
    (void)vcpu;
    if (u & FLAG_END) {
        if (counting && out) {
            fprintf(out, "%" PRIu64 "\n", count);
            fflush(out);
        }
        counting = 0;
    }
    if (u & FLAG_BEGIN) {
        counting = 1;
        count = 0;
    }
    if (counting)
        count += u & 0xffffffffu;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    const uint64_t pc = qemu_plugin_tb_vaddr(tb);
    uint64_t u = (uint64_t)qemu_plugin_tb_n_insns(tb);
    (void)id;
    if (pc == begin_addr) u |= FLAG_BEGIN;
    if (pc == end_addr) u |= FLAG_END;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)u);
}

static void at_exit_cb(qemu_plugin_id_t id, void *p)
{
    (void)id; (void)p;
    if (out) fclose(out);
    out = NULL;
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    int i;
    (void)info;
    for (i = 0; i < argc; ++i) {
        if (!strncmp(argv[i], "begin=", 6)) begin_addr = strtoull(argv[i] + 6, NULL, 0) & ~(uint64_t)1;
        else if (!strncmp(argv[i], "end=", 4)) end_addr = strtoull(argv[i] + 4, NULL, 0) & ~(uint64_t)1;
        else if (!strncmp(argv[i], "out=", 4)) out = fopen(argv[i] + 4, "w");
    }
    if (!begin_addr || !end_addr || !out) {
        fprintf(stderr, "icount plugin: needs begin=ADDR,end=ADDR,out=FILE\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit_cb, NULL);
    return 0;
}
