"""ONNX Runtime and LiteRT on an emulated Raspberry Pi 4 (aarch64 under qemu-user): devices/rpi.

Placeholder until ``devices/rpi/parity.py`` lands: its cells are reported SKIPPED with the reason.
"""

from __future__ import annotations

NAME = "rpi"


def cells(ctx) -> list:
    return []
