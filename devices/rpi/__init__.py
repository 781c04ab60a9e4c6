"""Raspberry Pi target: deployable bundles, SSH deploy with strict host keys, an emulated Pi 4.

Modules: ``pins`` (what the Pi runs), ``emulated_root`` (arm64 Debian root under qemu-user),
``bundle`` (folder + tarball to ship), ``deploy`` (SSH deploy with atomic switch-over),
``loopback_sshd`` (a local sshd whose sessions run on the emulated Pi), ``parity`` (aarch64 vs x86).
"""
