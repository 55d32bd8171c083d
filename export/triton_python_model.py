"""Python-backend model that serves an ONNX model with onnxruntime: the CPU flavour of the
model repository, for the tritonserver shipped by nvidia-pytriton (it has no onnxruntime
backend). ``stylegate triton`` copies this file as ``<model>/1/model.py`` next to a link
to the original ``model.onnx``; production serves the same ONNX file with
``platform: "onnxruntime_onnx"`` or a TensorRT plan instead.

Runs inside Triton's python-backend stub, never imported by stylegate itself. The
requests of one ``execute`` call (a batch formed by Triton's dynamic batcher) are
concatenated and run as ONE onnxruntime call, so Triton's batching is real batching.

Config parameters (all optional, string values):
  onnx_model        path of the ONNX file (default: ``model.onnx`` beside this file)
  sys_path          extra import paths, ``os.pathsep``-separated (PYTHONPATH does not
                    reach the stub)
  intra_op_threads  onnxruntime intra-op threads (default 0: onnxruntime decides)
  allow_spinning    "0": onnxruntime's worker threads sleep between parallel sections
                    instead of spinning (default "1", onnxruntime's own default)
  run_batch         at most this many samples per onnxruntime call: a larger batch runs
                    as several calls, one after another (default 0: the whole batch)
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        for path in reversed(params.get("sys_path", "").split(os.pathsep)):
            if path and path not in sys.path:
                sys.path.insert(0, path)
        import onnxruntime as ort  # after sys_path

        version_dir = os.path.join(args["model_repository"], args["model_version"])
        onnx_path = params.get("onnx_model") or os.path.join(version_dir, "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads") or 0)
        options.inter_op_num_threads = 1
        if params.get("allow_spinning", "1") == "0":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [
            (t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["output"]
        ]
        self.onnx_inputs = {i.name for i in self.session.get_inputs()}
        self.run_batch = int(params.get("run_batch") or 0) if self.batched else 0

    def execute(self, requests):
        responses = [None] * len(requests)
        good, feeds = [], []
        for i, request in enumerate(requests):
            try:
                feeds.append(self._feeds(request))
                good.append(i)
            except ValueError as exc:  # one bad request must not fail the others
                responses[i] = self._error(str(exc))
        if not self.batched:
            for i, feed in zip(good, feeds):
                responses[i] = self._run([i], [feed], responses)
            return responses
        if good:
            self._run(good, feeds, responses)
        return responses

    def _run(self, indices, feeds, responses):
        if len(feeds) == 1:
            batch = feeds[0]
        else:
            batch = {name: np.concatenate([f[name] for f in feeds], axis=0) for name in feeds[0]}
        try:
            results = self._session_run(batch)
        except Exception as exc:  # noqa: BLE001 - reported to the clients, not raised
            for i in indices:
                responses[i] = self._error(f"onnxruntime: {exc}")
            return responses[indices[0]]
        start = 0
        for i, feed in zip(indices, feeds):
            count = next(iter(feed.values())).shape[0] if self.batched else None
            tensors = []
            for (name, dtype), value in zip(self.outputs, results):
                part = value[start : start + count] if self.batched else value
                # A slice of a bigger array must be copied before it leaves the stub.
                tensors.append(pb_utils.Tensor(name, np.array(part, dtype=dtype, copy=True)))
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            start += count or 0
        return responses[indices[0]]

    def _session_run(self, batch):
        """The batch's outputs, in calls of at most ``run_batch`` samples: on one CPU thread
        the inversion step costs ~10% less per sample at batch 2 than at batch 4."""
        names = [name for name, _ in self.outputs]
        size = next(iter(batch.values())).shape[0]
        if not self.run_batch or size <= self.run_batch:
            return self.session.run(names, batch)
        parts = [
            self.session.run(names, {k: v[i : i + self.run_batch] for k, v in batch.items()})
            for i in range(0, size, self.run_batch)
        ]
        return [np.concatenate(outs, axis=0) for outs in zip(*parts)]

    def _feeds(self, request):
        feeds = {}
        for name in self.inputs:
            if name not in self.onnx_inputs:
                continue
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input '{name}'")
            feeds[name] = tensor.as_numpy()
        return feeds

    @staticmethod
    def _error(message):
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))

    def finalize(self):
        self.session = None
