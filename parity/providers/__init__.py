"""Cell providers: one small module per runtime or device, listed in ``REGISTRY``.

A provider module defines ``NAME`` and ``cells(ctx: Context) -> list[Cell]``: the cells it can
run for one artifact folder (usually one per manifest entry it understands). A cell whose runtime
is not installed is still returned, with ``skip`` set to the reason, so the report shows it as
SKIPPED instead of hiding it. To add a runtime or device: write the module, add one line here.
"""

from __future__ import annotations

import dataclasses
import importlib
import traceback
from pathlib import Path

from parity.cells import Cell, cell_id
from parity.inputs import HeldOut
from runtime.manifest import Manifest

REGISTRY: tuple[str, ...] = (
    "parity.providers.golden",  # golden.npz vs the live checkpoint (the export's own record)
    "parity.providers.torch",  # PyTorch through runtime.load(backend="torch")
    "parity.providers.onnx_reference",  # onnx.reference.ReferenceEvaluator: an independent float runtime
    "parity.providers.onnxruntime",
    "parity.providers.litert",
    "parity.providers.litert_ref",  # LiteRT on TFLite's reference kernels (integer files)
    "parity.providers.tflm",
    "parity.providers.c",  # the generated C, built for this host
    "parity.providers.c_reference",  # export/c/reference.py, the numpy twin of the int8 C
    "parity.providers.cortex_m",  # the generated C on Cortex-M boards under QEMU
    "parity.providers.rpi",  # ONNX Runtime / LiteRT on an emulated Raspberry Pi (aarch64)
)

# Providers that drive emulators (slow to start); `--skip-devices` leaves them out.
DEVICE_PROVIDERS = ("parity.providers.cortex_m", "parity.providers.rpi")


@dataclasses.dataclass
class Context:
    """Everything a provider may look at to decide its cells."""

    folder: Path
    manifest: Manifest
    arch: str
    heldout: HeldOut
    model: object  # the PyTorch SequenceModel (reference)
    cleanup: list = dataclasses.field(default_factory=list)  # callables run after the matrix (emulator sessions)

    def entries(self, **match) -> list[dict]:
        """Manifest entries exported successfully whose fields equal ``match`` (e.g. format="onnx")."""
        return [a for a in self.manifest.artifacts
                if a.get("status", "ok") == "ok" and all(a.get(k) == v for k, v in match.items())]


def collect(ctx: Context, providers: tuple[str, ...] = REGISTRY) -> list[Cell]:
    """Every provider's cells; a provider that crashes becomes one ERROR cell naming it."""
    cells: list[Cell] = []
    for module_name in providers:
        short = module_name.rsplit(".", 1)[-1]
        try:
            module = importlib.import_module(module_name)
            cells += module.cells(ctx)
        except Exception as e:  # a bug in a provider must fail the run loudly, not hide cells
            detail = traceback.format_exception_only(type(e), e)[-1].strip()

            def boom(_x, detail=detail):
                raise RuntimeError(detail)
            cells.append(Cell(cell_id(ctx.arch, "any", short, "provider"), ctx.arch, short, "float32", "whole",
                              short, what=f"provider {module_name} crashed: {detail}", run=boom))
    seen: dict[str, int] = {}
    for c in cells:  # ids must be unique: they are test names
        if c.id in seen:
            seen[c.id] += 1
            c.id = f"{c.id}-{seen[c.id]}"
        else:
            seen[c.id] = 1
    return cells


def list_cells(folder, providers: tuple[str, ...] = REGISTRY) -> list[Cell]:
    """The cells an artifact folder would get (golden rows only are loaded; nothing is run)."""
    from parity.inputs import load_heldout
    manifest = Manifest.read(folder)
    held, model = load_heldout(manifest, test_split=False)
    ctx = Context(Path(folder), manifest, str(manifest.model.get("arch") or "model"), held, model)
    return collect(ctx, providers)


__all__ = ["Context", "REGISTRY", "DEVICE_PROVIDERS", "collect", "list_cells"]
