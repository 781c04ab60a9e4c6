"""Device targets: Cortex-M (QEMU) and Raspberry Pi (emulated aarch64)."""
