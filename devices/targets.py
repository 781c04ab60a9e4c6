"""Cortex-M targets as small declarative descriptions: core, compiler flags, QEMU board, budgets.

The flash/RAM budgets are those of a typical microcontroller with that core (named in ``part``),
not of the QEMU board (whose memories are megabytes): a model that does not fit the budget is
refused before anything is built.
"""

from __future__ import annotations

import dataclasses

from runtime.errors import UserError


@dataclasses.dataclass(frozen=True)
class CortexMTarget:
    name: str
    core: str  # -mcpu value
    fpu: str | None  # -mfpu value (None: soft float)
    qemu_machine: str  # qemu-system-arm -M
    flash_bytes: int  # budget for the model (weights + code)
    ram_bytes: int  # budget for the model (state + stack)
    part: str  # a typical part with this core and memory, for the report
    dsp: bool  # has the DSP extension (SMLAD and friends)

    @property
    def cflags(self) -> list[str]:
        flags = [f"-mcpu={self.core}", "-mthumb"]
        if self.fpu:
            flags += [f"-mfpu={self.fpu}", "-mfloat-abi=hard"]
        else:
            flags += ["-mfloat-abi=soft"]
        return flags


TARGETS: dict[str, CortexMTarget] = {t.name: t for t in (
    CortexMTarget("cortex-m4", "cortex-m4", "fpv4-sp-d16", "mps2-an386", 512 * 1024, 64 * 1024,
                  "nRF52832-class (512 KB flash, 64 KB RAM)", dsp=True),
    CortexMTarget("cortex-m7", "cortex-m7", "fpv5-d16", "mps2-an500", 1024 * 1024, 256 * 1024,
                  "STM32F746-class (1 MB flash, 320 KB RAM)", dsp=True),
    CortexMTarget("cortex-m3", "cortex-m3", None, "mps2-an385", 256 * 1024, 32 * 1024,
                  "STM32F103-class (256 KB flash, 48 KB RAM), no DSP, no FPU", dsp=False),
    # Armv8.1-M with Helium (MVE); -mfpu=auto takes the FPU/MVE the core implies. The generated C
    # uses the DSP extension here as on M4/M7 (no Helium-specific kernel).
    CortexMTarget("cortex-m55", "cortex-m55", "auto", "mps3-an547", 1024 * 1024, 256 * 1024,
                  "Corstone-300-class M55 MCU (1 MB flash, 256 KB RAM), Helium unused", dsp=True),
)}


def get_target(name: str) -> CortexMTarget:
    try:
        return TARGETS[name]
    except KeyError:
        raise UserError(f"unknown target {name!r}: choose one of {', '.join(TARGETS)}") from None
