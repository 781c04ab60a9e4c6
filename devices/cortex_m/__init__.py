"""Cortex-M: build generated C models with arm-none-eabi-gcc, run them under QEMU, report flash/RAM/instructions."""
