#!/bin/sh
# Run one command inside the emulated Raspberry Pi 4 (an arm64 Debian root run by qemu-user).
#
#   unshare --user --map-root-user --mount -- sh enter_pi.sh ROOT FAKE STATE PROGRAM [ARGS...]
#
# Must run inside fresh user + mount namespaces (unshare above): every mount below is private to
# this command and vanishes with it, and the binfmt_misc instance is this namespace's own (Linux
# >= 6.7), so nothing on the host changes.
#   ROOT   the arm64 root folder (made by devices/rpi/emulated_root.py)
#   FAKE   folder with the Pi's fake `cpuinfo` and `cpu/` sysfs tree, and an empty `binfmt_misc/`
#   STATE  folder holding the device's persistent `home/` (-> /home/pi) and `tmp/` (-> /tmp), or -
set -eu
root=$1 fake=$2 state=$3
shift 3

# 1. Make aarch64 ELF files run through qemu-aarch64-static, also for every child process (pip,
#    venv, sh -c ...). The F flag opens the interpreter now, so it needs not exist inside ROOT.
qemu=$(command -v qemu-aarch64-static) || { echo "enter_pi: qemu-aarch64-static not found (apt-get install qemu-user-static)" >&2; exit 127; }
mount -t binfmt_misc binfmt_misc "$fake/binfmt_misc" || {
  echo "enter_pi: cannot mount a private binfmt_misc (needs Linux >= 6.7 and user namespaces)" >&2; exit 126; }
magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
printf '%s' ":qemu-aarch64:M::$magic:$mask:$qemu:F" > "$fake/binfmt_misc/register"

# 2. The host's /proc, /sys and /dev, with the CPU description replaced by a Raspberry Pi 4's:
#    ONNX Runtime's CPU detection reads them and crashes on an x86 host's.
mount --rbind /proc "$root/proc"
mount --bind "$fake/cpuinfo" "$root/proc/cpuinfo"
mount --rbind /sys "$root/sys"
mount --bind "$fake/cpu" "$root/sys/devices/system/cpu"
mount --rbind /dev "$root/dev"

# 3. The device's own persistent files, so the cached root itself stays as built.
if [ "$state" != - ]; then
  mount --bind "$state/home" "$root/home/pi"
  mount --bind "$state/tmp" "$root/tmp"
fi

# 4. Into the Pi: a clean login-like environment; QEMU_CPU reaches qemu for every process.
exec chroot "$root" /usr/bin/env -i HOME=/home/pi USER=pi LOGNAME=pi SHELL=/bin/sh LANG=C.UTF-8 \
  PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin QEMU_CPU=cortex-a72 \
  /bin/sh -c 'cd "$HOME" && exec "$@"' sh "$@"
