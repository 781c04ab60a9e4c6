"""``runtime.load``: one artifact (or a bare model file) behind one small API.

    model = runtime.load("artifacts/watch-gru")                  # best installed backend, float32
    model = runtime.load(folder, backend="litert", precision="int8")
    model = runtime.load(folder, artifact="tflm-int8")
    scores = model.predict(x_raw)              # x_raw [N, T, C] raw float features -> [N, K] float
    s = model.stream(); s.step(frame_raw)      # frame [C] or [B, C] -> scores after that frame
    s.reset()                                  # start an independent sequence

Callers always pass *raw* float features and get float scores: the manifest's ``preprocess``
normalization, int8 input quantization and output dequantization happen here, for every backend.
Every file is checked against the manifest's sha256 before a backend sees it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from runtime import isolate, validate
from runtime.backends import BY_SUFFIX, DEFAULT_ORDER, Backend, Quant, TensorSpec, backend_class
from runtime.errors import MissingDependency, UserError
from runtime.manifest import Manifest
from runtime.quant import from_tensor, to_tensor


def _plain(name: str) -> str:
    """A tensor name without TFLite's signature decoration (``serving_default_x:0`` -> ``x``)."""
    name = name.split(":")[0]
    return name[len("serving_default_"):] if name.startswith("serving_default_") else name


class Graph:
    """A loaded backend plus what the manifest says about its tensors (which is data, which is state)."""

    def __init__(self, backend: Backend, entry: dict | None, kind: str, opener=None):
        self.backend, self.entry, self.kind = backend, entry, kind
        self.opener = opener  # makes another independent instance (variable-state graphs need one per stream)
        declared = [TensorSpec.from_json(t) for t in (entry or {}).get("inputs", [])] or list(backend.inputs)
        declared_out = [TensorSpec.from_json(t) for t in (entry or {}).get("outputs", [])] or list(backend.outputs)
        state = (entry or {}).get("state") or getattr(backend, "state", None)
        if state is None and entry is None and kind == "step" and len(backend.inputs) > 1:
            state = {"mode": "explicit", "inputs": [t.name for t in backend.inputs[1:]],
                     "outputs": [t.name for t in backend.outputs[1:]]}
        self.mode = (state or {}).get("mode", "variables" if backend.has_variables else "none")
        where = backend.path if hasattr(backend, "path") else "the model"
        state_in = list((state or {}).get("inputs") or []) if self.mode == "explicit" else []
        state_out = list((state or {}).get("outputs") or []) if self.mode == "explicit" else []
        raw_in = (entry or {}).get("inputs") or []
        raw_out = (entry or {}).get("outputs") or []
        self.in_index = self._positions([t.name for t in declared], backend.inputs, where, "inputs",
                                        [r.get("index") for r in raw_in])
        self.out_index = self._positions([t.name for t in declared_out], backend.outputs, where, "outputs",
                                         [r.get("index") for r in raw_out])
        by_name_in = {t.name: t for t in declared}
        by_name_out = {t.name: t for t in declared_out}
        data_in = [t for t in declared if t.name not in state_in]
        data_out = [t for t in declared_out if t.name not in state_out]
        if len(data_in) != 1 or len(data_out) != 1:
            raise UserError(f"{where}: expected one data input and one scores output besides the state, found "
                            f"{[t.name for t in data_in]} and {[t.name for t in data_out]}; fix the manifest")
        self.x_pos = self.in_index[data_in[0].name]
        self.y_pos = self.out_index[data_out[0].name]
        self.x_file = backend.inputs[self.x_pos]
        self.x_quant = self._quant(data_in[0], self.x_file, where)
        self.y_quant = self._quant(data_out[0], backend.outputs[self.y_pos], where)
        self.state_in_pos = [self.in_index[n] for n in state_in]
        self.state_out_pos = [self.out_index[n] for n in state_out]
        self.state_in_quant = [by_name_in[n].quant for n in state_in]
        if len(self.state_in_pos) != len(self.state_out_pos):
            raise UserError(f"{where}: {len(state_in)} state inputs but {len(state_out)} state outputs; fix the manifest")
        shape = self.x_file.shape
        self.fixed_batch = shape[0] if shape else None
        if (entry or {}).get("precision") == "dynamic-range":
            # Dynamic quantization picks activation scales from the whole input tensor, so a row's
            # scores would depend on the other rows of its batch: run one sequence at a time.
            self.fixed_batch = 1
        self.fixed_time = shape[1] if kind == "sequence" and len(shape) == 3 else None

    @staticmethod
    def _positions(names: list[str], specs: list[TensorSpec], where, what: str, indices=()) -> dict[str, int]:
        """Manifest tensor name -> position in the file: the manifest's ``index``, else by name, else by order."""
        if len(names) != len(specs):
            raise UserError(f"{where} has {len(specs)} {what} but the manifest lists {len(names)}: re-export")
        pos: dict[str, int] = {}
        file_names = [s.name for s in specs]
        plain = [_plain(n) for n in file_names]
        indices = list(indices) + [None] * (len(names) - len(indices))
        for i, n in enumerate(names):
            if isinstance(indices[i], int) and 0 <= indices[i] < len(specs):
                pos[n] = indices[i]
            elif n in file_names:
                pos[n] = file_names.index(n)
            elif plain.count(n) == 1:
                pos[n] = plain.index(n)
            else:
                pos[n] = i  # names not kept by the converter: the order is the contract
        return pos

    @staticmethod
    def _quant(declared: TensorSpec, file: TensorSpec, where) -> Quant | None:
        if declared.quant and file.quant:
            a, b = declared.quant, file.quant
            if a.zero_point != b.zero_point or not np.isclose(a.scale, b.scale, rtol=1e-6, atol=0):
                raise UserError(f"{where}: manifest quantization of {declared.name!r} (scale {a.scale}, zero point "
                                f"{a.zero_point}) differs from the file's (scale {b.scale}, zero point {b.zero_point}): re-export")
        if np.issubdtype(np.dtype(file.dtype), np.integer):
            q = declared.quant or file.quant
            if q is None:
                raise UserError(f"{where}: integer tensor {declared.name!r} has no quantization parameters: re-export")
            return q
        return None

    def feed(self, x: np.ndarray) -> np.ndarray:
        return to_tensor(x, self.x_file.dtype, self.x_quant)

    def scores(self, outs: list[np.ndarray], rows: int) -> np.ndarray:
        return from_tensor(outs[self.y_pos], self.y_quant).reshape(rows, -1)

    def zero_state(self, rows: int) -> list[np.ndarray]:
        states = []
        for pos, q in zip(self.state_in_pos, self.state_in_quant):
            spec = self.backend.inputs[pos]
            shape = (rows,) + tuple(d or 1 for d in spec.shape[1:])
            fill = q.zero_point if (q and np.issubdtype(np.dtype(spec.dtype), np.integer)) else 0
            states.append(np.full(shape, fill, dtype=spec.dtype))
        return states

    def instance(self) -> Backend:
        """A backend whose variable tensors nobody else touches (explicit/no-state graphs share one)."""
        if self.mode == "variables" and self.opener is not None:
            return self.opener()
        return self.backend


def _chunks(n: int, size: int | None):
    size = size or n
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _pad(x: np.ndarray, rows: int) -> np.ndarray:
    """Pad the batch axis to ``rows`` by repeating the last row (for fixed-batch graphs)."""
    if len(x) == rows:
        return x
    return np.concatenate([x, np.repeat(x[-1:], rows - len(x), axis=0)], axis=0)


class _Lane:
    """Rows ``a:b`` of a stream's batch, run by one backend instance with its own state."""

    def __init__(self, a: int, b: int, backend: Backend, state: list[np.ndarray]):
        self.a, self.b, self.backend, self.state = a, b, backend, state


class Stepper:
    """A stream: one frame at a time, recurrent state carried between calls, ``reset()`` between sequences.

    Explicit-state graphs get zeros first, then their previous state outputs; variable-state
    (TFLite) graphs get their variable tensors reset here and are left alone within the stream.
    A fixed-batch graph (batch 1) runs a batch of B frames as B lanes, each with its own state.
    """

    def __init__(self, model: "Model", graph: Graph):
        self.model, self.graph = model, graph
        self.batch: int | None = None
        self.lanes: list[_Lane] = []
        self.fresh = True
        self.steps = 0

    def reset(self) -> None:
        """Forget all state: the next ``step`` starts a new, independent sequence (any batch size)."""
        for lane in self.lanes:
            lane.backend.reset_variables()
            lane.state = self.graph.zero_state(self._rows(lane.a, lane.b))
        self.fresh = True
        self.steps = 0

    def _rows(self, a: int, b: int) -> int:
        return self.graph.fixed_batch or (b - a)

    def _open(self, batch: int) -> None:
        g = self.graph
        old = [lane.backend for lane in self.lanes]
        self.lanes = []
        for i, (a, b) in enumerate(_chunks(batch, g.fixed_batch)):
            backend = old[i] if i < len(old) else g.instance()
            backend.reset_variables()
            self.lanes.append(_Lane(a, b, backend, g.zero_state(self._rows(a, b))))
        self.batch = batch

    def step(self, frame) -> np.ndarray:
        """Raw features of one frame ``[C]`` (or ``[B, C]``) -> float scores ``[K]`` (or ``[B, K]``)."""
        m, g = self.model, self.graph
        arr = validate.features(frame, (1, 2), m.channels, "frame", "[C] or [B, C]")
        single = arr.ndim == 1
        arr = m.normalize(arr.reshape(1, -1) if single else arr)
        rows = len(arr)
        if not self.lanes or (self.fresh and rows != self.batch):
            self._open(rows)
        elif rows != self.batch:
            raise UserError(f"frame batch {rows} differs from this stream's batch {self.batch}: call reset() first "
                            f"or open another stream()")
        self.fresh = False
        rank = len(g.x_file.shape)
        out, states = [], []
        for lane in self.lanes:
            n = self._rows(lane.a, lane.b)
            x = _pad(arr[lane.a:lane.b], n)
            feeds: list = [None] * len(lane.backend.inputs)
            feeds[g.x_pos] = g.feed(x.reshape((n, 1, -1) if rank == 3 else (n, -1)))
            for pos, s in zip(g.state_in_pos, lane.state):
                feeds[pos] = s
            outs = lane.backend.run(feeds)
            states.append([outs[p] for p in g.state_out_pos])
            out.append(g.scores(outs, n)[: lane.b - lane.a])
        try:
            scores = m.checked(np.concatenate(out, axis=0), arr)
        except UserError as e:
            if g.mode == "variables":  # the state is inside the graph: it cannot be rolled back
                raise UserError(f"{e}; this stream's state is now spoiled: call reset() before the next "
                                f"frame") from None
            raise  # a refused frame leaves the explicit state as it was before it
        for lane, s in zip(self.lanes, states):
            lane.state = s
        self.steps += 1
        return scores[0] if single else scores

    def run(self, x) -> np.ndarray:
        """Stream whole sequences ``[N, T, C]`` frame by frame from a fresh state -> scores ``[N, T, K]``."""
        arr = validate.features(x, (3,), self.model.channels, "x", "[N, T, C]")
        self.reset()
        return np.stack([self.step(arr[:, t]) for t in range(arr.shape[1])], axis=1)


class Model:
    """A loaded model: ``predict`` whole sequences, ``stream`` frames; raw float features in, float scores out."""

    def __init__(self, *, sequence: Graph | None, step: Graph | None, channels: int, classes: int,
                 preprocess: tuple | None, precision: str | None, backend: str, class_names=None,
                 artifact: str | None = None, step_artifact: str | None = None, source: Path | None = None,
                 manifest: Manifest | None = None, head: str | None = None):
        if sequence is None and step is None:
            raise UserError(f"{source}: nothing to run (no sequence or step graph)")
        self.sequence_graph, self.step_graph = sequence, step
        self.channels, self.classes = int(channels), int(classes)
        self.mean = self.std = None
        if preprocess is not None:
            self.mean = np.asarray(preprocess[0], np.float32)
            self.std = np.asarray(preprocess[1], np.float32)
            if self.mean.shape != (self.channels,) or self.std.shape != (self.channels,) or np.any(self.std <= 0):
                raise UserError(f"{source}: preprocess mean/std must be {self.channels} values with std > 0; re-export")
        self.precision = precision
        self.backend = backend
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.classes)]
        self.artifact, self.step_artifact = artifact, step_artifact
        self.source, self.manifest = source, manifest
        # "frames": the model labels every frame; predict() returns [N, T, K] (docs/frames.md)
        self.head = head or ((manifest.model.get("head") if manifest is not None else None) or "classify")
        self.frames = self.head == "frames"
        g = sequence or step
        self.quant = None
        if g.x_quant or g.y_quant:
            self.quant = {"input": g.x_quant, "output": g.y_quant}
        seq_t = sequence.fixed_time if sequence else None
        self.input_spec = TensorSpec("x", (None, seq_t, self.channels), "float32")
        self.output_spec = TensorSpec("scores", (None, None, self.classes) if self.frames else (None, self.classes),
                                      "float32")

    def __repr__(self) -> str:
        parts = [f"backend={self.backend}", f"precision={self.precision}"]
        if self.artifact:
            parts.append(f"artifact={self.artifact}")
        if self.step_artifact:
            parts.append(f"step={self.step_artifact}")
        return f"Model({', '.join(parts)}, in={list(self.input_spec.shape)}, out={list(self.output_spec.shape)})"

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """The manifest's preprocessing: (x - mean) / std per channel (refusing float32 overflow)."""
        if self.mean is None:
            return x
        with np.errstate(over="ignore"):
            xn = (x - self.mean) / self.std
        if not np.all(np.isfinite(xn)):
            raise UserError(f"input values up to {np.abs(x).max():.3g} overflow float32 once normalized "
                            f"(std down to {self.std.min():.3g}): they are far outside any sensor's range; clip them")
        return xn

    def checked(self, scores: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Refuse NaN/Inf scores: finite inputs so far outside the training range that the graph overflowed."""
        if not np.all(np.isfinite(scores)):
            raise UserError(f"{self.artifact or self.backend} produced NaN/Inf scores for finite inputs "
                            f"(largest |normalized input| {np.abs(x).max():.3g}): the input is far outside the "
                            f"training range; clip or rescale it")
        return scores

    @property
    def can_stream(self) -> bool:
        return self.step_graph is not None

    def predict(self, x) -> np.ndarray:
        """Raw float features ``[N, T, C]`` -> float scores ``[N, K]`` from each sequence's last step
        (a frames model: ``[N, T, K]``, the scores after every frame)."""
        arr = validate.features(x, (3,), self.channels, "x", "[N, T, C]")
        g = self.sequence_graph
        if g is None:  # only a step graph: stream every sequence, keep the last scores (same math)
            per_step = self.stream().run(arr)
            return per_step if self.frames else per_step[:, -1]
        if g.fixed_time is not None and arr.shape[1] != g.fixed_time:
            hint = " or stream() it" if self.can_stream else ""
            name = (g.entry or {}).get("name") or self.artifact or "this model"  # the sequence graph's
            raise UserError(f"x has {arr.shape[1]} time steps but {name} is built for "
                            f"T={g.fixed_time}: pass [N, {g.fixed_time}, {self.channels}]{hint}")
        xn = self.normalize(arr)
        out = []
        for a, b in _chunks(len(xn), g.fixed_batch):
            rows = g.fixed_batch or (b - a)
            feeds: list = [None] * len(g.backend.inputs)
            feeds[g.x_pos] = g.feed(_pad(xn[a:b], rows))
            g.backend.reset_variables()  # every sequence starts from a zero state
            out.append(g.scores(g.backend.run(feeds), rows)[: b - a])
        scores = np.concatenate(out, axis=0)
        if self.frames:  # [N, T * K] -> [N, T, K]
            scores = scores.reshape(len(scores), -1, self.classes)
        return self.checked(scores, xn)

    def stream(self) -> Stepper:
        """A new, independent stepper (its own state; streams do not share variable tensors)."""
        if self.step_graph is None:
            raise UserError(f"{self.artifact or self.source} has no streaming (step) graph: load an artifact "
                            f"folder whose manifest has a kind='step' artifact for {self.backend}")
        return Stepper(self, self.step_graph)


# -- loading --------------------------------------------------------------------------------
def _open_graph(cls: type[Backend], path: Path, entry: dict | None, kind: str, threads: int, options: dict) -> Graph:
    def opener():
        return cls(path, entry=entry, threads=threads, **options)
    return Graph(opener(), entry, kind, opener)


def _pick(man: Manifest, backend: str | None, precision: str | None) -> tuple[str, dict]:
    """Choose (backend, entry): the named backend, else the first installed one with a usable artifact."""
    order = [backend] if backend else list(DEFAULT_ORDER)
    missing: list[MissingDependency] = []
    for name in order:
        try:
            cls = backend_class(name)
        except UserError:
            if backend:
                raise
            continue
        cands = man.candidates(name, cls.formats, precision)
        if not cands:
            continue
        if not backend and not cls.available():
            try:
                cls.library()
            except MissingDependency as e:
                missing.append(e)
            continue
        # float32 unless asked otherwise; whole-sequence graph first (its companion gives streaming)
        cands.sort(key=lambda a: (precision is None and a.get("precision") != "float32", a.get("kind") != "sequence"))
        return name, cands[0]
    listing = ", ".join(f"{a.get('name')} ({a.get('runtime')}, {a.get('precision')}, {a.get('status', 'ok')})"
                        for a in man.artifacts) or "none"
    if missing:
        raise missing[0]
    want = f"backend {backend!r}" if backend else "any installed backend"
    if precision:
        want += f" at precision {precision!r}"
    raise UserError(f"no usable artifact for {want} in {man.folder}: artifacts are {listing}")


def _load_folder(folder: Path, backend, artifact, precision, threads, options) -> Model:
    man = Manifest.read(folder, bare_files=True)
    mfacts = man.model
    try:
        channels, classes = int(mfacts["input_size"]), int(mfacts["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{folder}/manifest.json lacks model.input_size / model.num_classes: re-export") from None
    if backend == "torch":
        if artifact or precision not in (None, "float32"):  # never a silent float32 model in their place
            asked = f"artifact {artifact!r}" if artifact else f"precision {precision!r}"
            raise UserError(f"backend 'torch' runs the float32 training checkpoint, not {asked}: drop "
                            f"{'artifact' if artifact else 'precision'}=, or choose another backend")
        return _load_reference(man.checkpoint_path(), threads, man.preprocess, man)
    if artifact:
        entry = man.by_name(artifact)
        status = entry.get("status", "ok")
        if status == "out-of-tolerance":  # it runs, but export judged its numbers outside the policy
            warnings.warn(f"artifact {artifact!r} is out of tolerance: {entry.get('error')}", stacklevel=3)
        elif status != "ok":
            raise UserError(f"artifact {artifact!r} has status {status!r} ({entry.get('error')}): "
                            f"it cannot be loaded; choose another of {', '.join(man.names())}")
        backend = backend or entry.get("runtime")
        if precision and entry.get("precision") != precision:
            raise UserError(f"artifact {artifact!r} has precision {entry.get('precision')!r}, not {precision!r}: "
                            f"drop the precision, or choose another of {', '.join(man.names())}")
    else:
        backend, entry = _pick(man, backend, precision)
    cls = backend_class(backend)
    if entry.get("format") not in cls.formats:
        raise UserError(f"backend {backend!r} cannot run {entry.get('format')!r} artifact {entry.get('name')!r}: "
                        f"it runs {', '.join(cls.formats)}")
    cls.library_for(entry)  # MissingDependency with the install command, before touching any file
    kind = entry.get("kind", "sequence")
    other = man.companion(entry, "step" if kind == "sequence" else "sequence", backend, cls.formats)
    graphs: dict[str, Graph] = {}
    names: dict[str, str] = {}
    for e in (entry, other):
        if e is None:
            continue
        path = man.verified(e)  # sha256 before any library parses the file
        opts = dict(options)
        graphs[e.get("kind", "sequence")] = _open_graph(cls, path, e, e.get("kind", "sequence"), threads, opts)
        names[e.get("kind", "sequence")] = e.get("name")
    return Model(sequence=graphs.get("sequence"), step=graphs.get("step"), channels=channels, classes=classes,
                 preprocess=man.preprocess, precision=entry.get("precision"), backend=backend,
                 class_names=man.class_names, artifact=names.get(kind), step_artifact=names.get("step"),
                 source=folder, manifest=man)


def _load_reference(checkpoint: Path, threads, preprocess, man: Manifest | None) -> Model:
    cls = backend_class("torch")
    seq = Graph(cls(checkpoint, threads=threads, kind="sequence"), None, "sequence")
    step = Graph(cls(checkpoint, threads=threads, kind="step"), None, "step")
    spec, meta = seq.backend.model.spec, seq.backend.meta
    if preprocess is None and meta.get("input_mean") is not None:
        preprocess = (meta["input_mean"], meta["input_std"])
    names = man.class_names if man else meta.get("class_names")
    return Model(sequence=seq, step=step, channels=spec.input_size, classes=spec.num_classes, preprocess=preprocess,
                 precision="float32", backend="torch", class_names=names, source=checkpoint, manifest=man,
                 head=getattr(spec, "head", "classify"))


def _load_bare(path: Path, backend, threads, options) -> Model:
    """A single model file without a manifest: no sha256 to check, no normalization, specs from the file."""
    backend = backend or BY_SUFFIX.get(path.suffix.lower())
    if backend is None:
        raise UserError(f"cannot tell which backend runs {path}: pass backend= one of "
                        f"{', '.join(BY_SUFFIX.values())} or load an artifact folder")
    if backend == "torch":
        return _load_reference(path, threads, None, None)
    cls = backend_class(backend)
    if backend in isolate.RISKY_BACKENDS:  # no sha256 to check: a damaged file must not crash this process
        cls.library()
        isolate.probe(backend, path, options)
    first = cls(path, entry=None, threads=threads, **options)
    x = first.inputs[0]
    if len(x.shape) == 2 or (len(x.shape) == 3 and x.shape[1] == 1) or len(first.inputs) > 1:
        kind = "step"
    elif len(x.shape) == 3:
        kind = "sequence"
    else:
        raise UserError(f"{path}: first input has shape {list(x.shape)}, expected [N, T, C] or [B, C]")
    graph = Graph(first, None, kind, lambda: cls(path, entry=None, threads=threads, **options))
    y = first.outputs[graph.y_pos]
    channels = x.shape[-1]
    if channels is None:
        raise UserError(f"{path}: the channel dimension of input {x.name!r} is dynamic; load it through its artifact folder")
    precision = x.dtype  # a bare file records no precision; its input dtype is the best guess
    return Model(sequence=graph if kind == "sequence" else None, step=graph if kind == "step" else None,
                 channels=channels, classes=y.shape[-1] or 0, preprocess=None, precision=precision,
                 backend=backend, artifact=path.name, source=path)


def load(path, backend: str | None = None, artifact: str | None = None, precision: str | None = None,
         threads: int = 1, **options) -> Model:
    """Load an artifact folder (or its manifest.json, or a bare .onnx/.tflite/.safetensors file).

    ``artifact`` picks a manifest entry by name; otherwise ``backend`` (onnxruntime, litert, tflm,
    c, torch) and ``precision`` (float32, int8, ...) pick one of the entries exported for that
    backend (its manifest ``runtime``), float32 and the first installed backend by default. The entry of the other kind (sequence/step) with the same precision is
    loaded with it, so ``predict`` and ``stream`` both work. ``options`` go to the backend
    (e.g. ``arena_size`` for tflm).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: pass an artifact folder or a model file")
    if path.is_file() and path.name == "manifest.json":
        path = path.parent
    if path.is_dir():
        return _load_folder(path, backend, artifact, precision, threads, options)
    if artifact:
        raise UserError(f"artifact={artifact!r} needs an artifact folder, but {path} is a single file: pass the "
                        f"folder that holds manifest.json, or load the file without artifact=")
    return _load_bare(path, backend, threads, options)
