#!/usr/bin/env python3
"""Merges sharded safetensors (model-0000k-of-0000n.safetensors + model.safetensors.index.json)
into one model.safetensors. Standard library only.

The GPU machine hands back files of at most 16 MiB, so train.py --pack writes 12 MB shards; the
bundled model is stored as a single file:

    python3 tools/train_demo/merge_shards.py SHARD_DIR resources/models/kvscope-demo/model.safetensors

safetensors layout: u64 little-endian header size N, N bytes of JSON {name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {...}}, then the tensor bytes (offsets relative to
the end of the header). Tensors are written in name order; the header is padded with spaces to a
multiple of 8 bytes.
"""
import json
import os
import struct
import sys


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return header, 8 + n


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: merge_shards.py SHARD_DIR OUT.safetensors")
    src, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(src, "model.safetensors.index.json")) as f:
        weight_map = json.load(f)["weight_map"]
    tensors = {}
    for name, shard in weight_map.items():
        header, base = read_header(os.path.join(src, shard))
        info = header[name]
        tensors[name] = (os.path.join(src, shard), base, info)
    new_header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):
        _, _, info = tensors[name]
        begin, end = info["data_offsets"]
        new_header[name] = {"dtype": info["dtype"], "shape": info["shape"],
                            "data_offsets": [offset, offset + end - begin]}
        offset += end - begin
    blob = json.dumps(new_header, separators=(",", ":")).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in sorted(tensors):
            path, base, info = tensors[name]
            begin, end = info["data_offsets"]
            with open(path, "rb") as s:
                s.seek(base + begin)
                data = s.read(end - begin)
            if len(data) != end - begin:
                sys.exit(f"{path}: tensor {name} is truncated")
            f.write(data)
    print(f"wrote {out}: {len(tensors)} tensors, {offset} bytes of data")


if __name__ == "__main__":
    main()
