"""Export a trained checkpoint to every artifact a device needs, verify each one, index them.

Entry points: ``export.pipeline.export_artifacts`` (the library call) and ``python -m export``
(the CLI behind ``invoke export``). One module per job:

- ``onnx_float``: float32 whole-sequence and streaming-step ONNX graphs (native LSTM/GRU ops).
- ``onnx_unrolled``: the recurrence decomposed into MatMul/Sigmoid/Tanh/Mul/Add, unrolled over the
  window length, so ONNX Runtime's static quantizer can quantize it.
- ``onnx_quant``: dynamic and static (QDQ) int8 quantization with onnxruntime.quantization.
- ``onnx_session``: ONNX Runtime sessions, batch/stream prediction and latency for verification.
- ``verify``: compare any runtime's scores with PyTorch against runtime/tolerances.py.
- ``manifest``: records, sha256, op counts, golden samples, manifest.json.
- ``pipeline``: orchestration, atomic folder swap, TFLite and C exporters when importable.
- ``summary``: the table printed at the end.
"""
