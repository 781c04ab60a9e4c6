"""The int8 C on the Raspberry Pi's aarch64: exact instructions per inference, NEON kernel vs portable loop.

For each artifact folder, the exported ``c-int8`` library is cross-compiled twice for the Pi 4's
Cortex-A72 (``devices/rpi/cross.py``): as generated (dot products on NEON's SMLAL) and with
``<PREFIX>_PORTABLE`` (the plain C loop). One whole-sequence inference of the golden input is
counted exactly under qemu-aarch64 with the TCG instruction-counting plugin; both builds must give
the scores of the host build bit for bit. Instruction counts, not times: no Pi is reachable here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devices.work_folder import work_folder
from runtime.errors import UserError


def bench_pi(folders, work_dir=None, progress=None) -> list[dict]:
    """One row per artifact folder: NEON and portable instructions per inference and per MAC. Errors become rows."""
    from devices.cortex_m.report import c_library_and_inputs, macs_per_step
    from devices.rpi.cross import count_instructions
    from export.c import build as HB
    with work_folder(work_dir, "rnn-edge-bench-pi-") as work:  # removed at the end unless the caller gave it
        rows = []
        for folder in folders:
            name = Path(folder).name
            if progress:
                progress(f"{name} aarch64")
            try:
                lib, prefix, model, x = c_library_and_inputs(Path(folder), "int8", 2, work / name)
                if f"{prefix.upper()}_USE_NEON" not in (lib / f"{prefix}.c").read_text():
                    raise UserError(f"{lib / prefix}.c predates the NEON kernel (2026-11-29): re-export {folder} "
                                    f"(invoke export) to count it")
                host = HB.run_harness(HB.build_harness(lib, prefix, "int8", work / name / "host" / "h"), x, "int8")
                macs = macs_per_step(model) * int(x.shape[1])
                row = {"folder": str(folder), "model": f"{model['arch'].upper()} {model['input_size']}->"
                       f"{'->'.join(map(str, model['hidden_sizes']))}->{model['num_classes']}",
                       "cpu": "cortex-a72 (qemu-aarch64)", "steps": int(x.shape[1]), "macs_per_inference": macs}
                for kernel, defines in (("neon", ()), ("portable", (f"{prefix.upper()}_PORTABLE",))):
                    instr, scores = count_instructions(lib, prefix, "int8", x, work / name / kernel, defines)
                    row[kernel] = {"instructions": instr, "per_mac": instr / macs,
                                   "host_identical": bool(np.array_equal(scores, host))}
                row["portable_over_neon"] = row["portable"]["instructions"] / row["neon"]["instructions"]
            except UserError as e:
                row = {"folder": str(folder), "error": str(e)}
            rows.append(row)
        return rows
