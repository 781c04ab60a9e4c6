"""The C models on Cortex-M cores under QEMU: flash, RAM, exact instructions per inference and per MAC.

A thin loop over ``devices.cortex_m.report.firmware`` (build with arm-none-eabi-gcc, run under
qemu-system-arm, count instructions with the TCG plugin, check bit-identity with the host build).
MAC lower bound: ``macs_per_inference`` is the number of multiply-accumulates of the recurrent
layers; one instruction per MAC is the floor of a scalar MAC loop, 0.5 the floor of SMLAD (two
16-bit MACs per instruction, DSP cores) before any load, requantization or activation is counted.
"""

from __future__ import annotations

import json
from pathlib import Path

from devices.work_folder import work_folder
from runtime.errors import UserError

DEFAULT_TARGETS = ("cortex-m4", "cortex-m7", "cortex-m55", "cortex-m3")


def bench_mcu(folders, targets=DEFAULT_TARGETS, precisions=("int8", "float32"), float_targets=("cortex-m4",),
              work_dir=None, progress=None) -> list[dict]:
    """One row per (model folder, target, precision); float32 only on ``float_targets``. Errors become rows."""
    from devices.cortex_m.report import firmware
    with work_folder(work_dir, "rnn-edge-bench-mcu-") as work:  # removed at the end unless the caller gave it
        rows = []
        for folder in folders:
            for precision in precisions:
                for target in targets:
                    if precision != "int8" and target not in float_targets:
                        continue
                    if progress:
                        progress(f"{Path(folder).name} {precision} {target}")
                    try:
                        rep = json.loads(firmware(target=target, artifacts=str(folder), precision=precision, as_json=True,
                                                  sequences=2, work_dir=str(work / Path(folder).name / precision / target)))
                    except UserError as e:
                        rows.append({"folder": str(folder), "target": target, "precision": precision, "error": str(e)})
                        continue
                    rep["folder"] = str(folder)
                    i = rep["instructions"]
                    if i.get("per_mac"):
                        i["scalar_floor_per_mac"] = 1.0
                        i["smlad_floor_per_mac"] = 0.5 if rep.get("dsp") else None
                    rows.append(rep)
        return rows
