"""On-device inference for the project's LSTM/GRU models.

Imports with numpy alone; each inference backend is imported only when it is used.
"""

from runtime.errors import MissingDependency, UserError

__all__ = ["UserError", "MissingDependency"]
