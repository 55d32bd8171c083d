"""torch -> ONNX -> (TensorRT) exporter: writes model_repository/ for Triton and the gateway.

Modules (imported lazily; this package itself does not import torch):
- ``api``: export_checkpoints / export_random / export_generator (Python entry points)
- ``cli``: the ``stylegate export`` command
- ``graphs``: export wrappers of the served networks, the traced inversion-step graph
- ``onnx_export``: torch.onnx export named by service/signatures.py
- ``triton_config``: config.pbtxt text (torch-free; onnx, python and tensorrt flavours)
- ``repository``: writes models, configs and stylegate.json
- ``directions``: SeFa, GANSpace, InterFaceGAN
- ``boundaries``: InterFaceGAN from users' labels or ONNX classifier, after export (torch-free)
- ``blend``: layer swapping
- ``importers``, ``safe_pickle``: users' rosinality / NVlabs checkpoints
- ``tensorrt``: model.plan builds on a GPU
"""
