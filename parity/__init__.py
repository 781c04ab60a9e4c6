"""The parity suite: every runtime and precision against the float PyTorch reference.

    python -m parity artifacts/watch-gru artifacts/watch-lstm --out docs/parity

For each artifact folder (export's manifest.json + golden.npz) it builds one *matrix* of cells -
runtime x precision x artifact, whole-sequence or streaming - runs the same held-out inputs
(golden.npz, then the task's test split) through each, measures each against the PyTorch model
run live from the checkpoint, and judges it by the policy in runtime/tolerances.py. Exit status 1
names the failing cells. A cell whose runtime is not installed is SKIPPED with the reason.

Modules (one job each):
- ``cells``: what a cell is, what running it gave.
- ``inputs``: the held-out rows and the live reference.
- ``providers/``: one module per runtime or device that yields cells (``REGISTRY``); runtimes are
  driven through ``runtime.load``, devices through ``devices/``.
- ``matrix``: run, measure (runtime/metrics.py), compare cells (LSB, streaming), judge.
- ``judge``: metrics against runtime/tolerances.py.
- ``report``: terminal table, parity.json, parity.md with PNG plots.

The package lives at the top level (not in ``runtime/``): it needs the training checkpoint, the
export's numpy C reference and the device emulators, none of which a deployed runtime carries.
"""
