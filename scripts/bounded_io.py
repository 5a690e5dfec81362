"""Reading the files the Python tools are given, as cinefuse reads them: only a regular file,
opened without blocking (a FIFO or a device in a file's place is refused, not waited on or
read forever), and never more than a cap for its kind. Each refusal names the file and exits."""

import csv
import io
import json
import os
import stat
import struct
import sys

MIB = 1 << 20
# The same caps as cinefuse's own readers (user_file.rs, feature_cache.rs, import/mod.rs,
# run_dir): far above any real file of each kind.
CONFIG_CAP = MIB
JSON_CAP = 256 * MIB
JSONL_CAP = 1024 * MIB
TOKENIZER_CAP = 64 * MIB
POSTER_CAP = 64 * MIB
FEATURE_TABLE_CAP = 4096 * MIB
# Prepared posters (uint8 pixels of every movie) and model weights.
LARGE_CAP = 16384 * MIB


def read_bytes(path, cap, hint="", name=None):
    """The whole of PATH, refused unless it is a regular file of at most `cap` bytes. `name`
    (the path by default) leads each refusal, e.g. the flag that gave the file."""
    name = name or path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        sys.exit(f"{name}: cannot read ({e.strerror}){hint}")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        sys.exit(f"{name}: not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        sys.exit(f"{name}: larger than its limit of {cap} bytes")
    return data


def read_text(path, cap, hint=""):
    data = read_bytes(path, cap, hint)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        sys.exit(f"{path}: not UTF-8 at byte {e.start}")


def read_json(path, cap=JSON_CAP, hint=""):
    try:
        return json.loads(read_text(path, cap, hint))
    except ValueError as e:
        sys.exit(f"{path}: not JSON ({e}){hint}")


def read_jsonl(path, cap=JSONL_CAP):
    """The objects on the non-blank lines of a JSON-lines file; a bad line is named by number."""
    out = []
    for number, line in enumerate(read_text(path, cap).splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as e:
            sys.exit(f"{path}:{number}: not JSON ({e})")
        if not isinstance(value, dict):
            sys.exit(f"{path}:{number}: not a JSON object")
        out.append(value)
    return out


def read_csv_rows(path, cap=JSONL_CAP):
    """The rows of a CSV file with a header line, as dictionaries."""
    return list(csv.DictReader(io.StringIO(read_text(path, cap), newline="")))


def read_safetensors(path, cap=LARGE_CAP, framework="np", name=None):
    """A safetensors file's tensors (NumPy arrays, or torch tensors with framework "pt") and
    its metadata (empty when it has none). A damaged file raises the library's error."""
    if framework == "pt":
        from safetensors.torch import load
    else:
        from safetensors.numpy import load
    data = read_bytes(path, cap, name=name)
    tensors = load(data)
    header = json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])
    return tensors, header.get("__metadata__") or {}
