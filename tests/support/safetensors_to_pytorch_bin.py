"""Writes a PyTorch `pytorch_model.bin` (zip + pickle, as torch.save does) from a safetensors file,
without needing torch: the tests use it to prove that tokenlens reads PyTorch checkpoints.

usage: safetensors_to_pytorch_bin.py IN.safetensors OUT.bin [--prefix bert.]
"""
import collections
import json
import pickle
import struct
import sys
import types
import zipfile

# Stand-ins for the torch names a checkpoint refers to; pickle records them by module and name.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
    raise NotImplementedError


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
STORAGE = {"F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage", "F64": "DoubleStorage"}
SIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}
for name in STORAGE.values():
    cls = type(name, (), {})
    cls.__module__ = "torch"
    setattr(torch, name, cls)
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


class Storage:
    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel


class FakeTensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride, acc = [], 1
        for dim in reversed(self.shape):
            stride.insert(0, acc)
            acc *= dim
        return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))


class CheckpointPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", getattr(torch, STORAGE[obj.dtype]), obj.key, "cpu", obj.numel)
        return None


def main():
    src, dst = sys.argv[1], sys.argv[2]
    prefix = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--prefix" else ""
    with open(src, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    state = collections.OrderedDict()
    blobs = {}
    for i, (name, info) in enumerate(sorted((k, v) for k, v in header.items() if k != "__metadata__")):
        if info["dtype"] not in STORAGE:
            continue
        start, end = info["data_offsets"]
        numel = (end - start) // SIZE[info["dtype"]]
        key = str(i)
        blobs[key] = data[start:end]
        state[prefix + name] = FakeTensor(Storage(key, info["dtype"], numel), info["shape"])
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        import io
        buf = io.BytesIO()
        CheckpointPickler(buf, protocol=2).dump(state)
        z.writestr("archive/data.pkl", buf.getvalue())
        for key, blob in blobs.items():
            z.writestr(f"archive/data/{key}", blob)
        z.writestr("archive/version", "3\n")


if __name__ == "__main__":
    main()
