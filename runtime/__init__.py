"""On-device inference for the project's LSTM/GRU models.

    import runtime
    model = runtime.load("artifacts/watch-gru", backend="onnxruntime")
    scores = model.predict(x)            # raw float features [N, T, C] -> float scores [N, K]
    stepper = model.stream()             # stepper.step(frame) per frame, stepper.reset() between sequences

Imports with numpy alone; each inference backend is imported only when it is used.
"""

from runtime.errors import MissingDependency, UserError
from runtime.model import Model, Stepper, load

__all__ = ["load", "Model", "Stepper", "UserError", "MissingDependency"]
