"""Benchmarks (not tests): ``python -m bench`` / ``invoke bench``.

One run measures, side by side, and writes docs/benchmarks/bench.{json,md} + PNG plots:

- ``runtimes``: every exported artifact through ``runtime.load`` (latency per sequence / per
  streaming step, peak RSS in a child process per artifact, file size, accuracy);
- ``mcu``: the C models on Cortex-M3/M4/M7/M55 under QEMU (``devices.cortex_m.report``);
- ``tflm``: TFLite Micro's interpreter against our int8 C on the same int8 LSTM, on the host;
- ``scaling``: random-weight models, hidden 16..256 and length 25..400, latency and Cortex-M4
  instructions against MACs with a fitted line;
- ``training``: training throughput on CPU (a short run of the default config);
- ``machine``: what it ran on. ``report`` turns it all into Markdown, JSON and plots.
"""
