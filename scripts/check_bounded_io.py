"""Checks bounded_io.py, the reader every Python tool here uses for the files it is given:
FIFOs, devices and folders are refused without waiting, files past their cap are refused,
and a bad line of a JSON-lines file is named by number. Run by the train tests.

usage: check_bounded_io.py
"""

import os
import signal
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bounded_io as bio  # noqa: E402
from check_paired_bootstrap import refused  # noqa: E402


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def check_special_files(tmp):
    fifo = os.path.join(tmp, "movies.jsonl")
    os.mkfifo(fifo)
    refused(lambda: bio.read_jsonl(fifo), f"{fifo}: not a regular file")
    refused(lambda: bio.read_bytes("/dev/zero", 1 << 20), "/dev/zero: not a regular file")
    refused(lambda: bio.read_json(tmp), "not a regular file")
    refused(lambda: bio.read_bytes(os.path.join(tmp, "absent"), 10, name="--flag x"), "--flag x: cannot read")


def check_contents(tmp):
    small = write(os.path.join(tmp, "small.bin"), b"0123456789")
    assert bio.read_bytes(small, 10) == b"0123456789"
    refused(lambda: bio.read_bytes(small, 9), "larger than")
    lines = write(os.path.join(tmp, "ok.jsonl"), b'{"id": 1}\n\n  \n{"id": 2}\n')
    assert bio.read_jsonl(lines) == [{"id": 1}, {"id": 2}]
    bad = write(os.path.join(tmp, "bad.jsonl"), b'{"id": 1}\n\n{"id": \n')
    refused(lambda: bio.read_jsonl(bad), f"{bad}:3: not JSON")
    array = write(os.path.join(tmp, "array.jsonl"), b'{"id": 1}\n[1, 2]\n')
    refused(lambda: bio.read_jsonl(array), f"{array}:2: not a JSON object")
    latin = write(os.path.join(tmp, "latin.jsonl"), b'{"title": "caf\xe9"}\n')
    refused(lambda: bio.read_jsonl(latin), "not UTF-8 at byte 14")
    broken = write(os.path.join(tmp, "broken.json"), b'{"a": ')
    refused(lambda: bio.read_json(broken, hint="; run it again"), "run it again")
    table = write(os.path.join(tmp, "oof.csv"), b'id,p_Drama\r\nm1,0.5\r\nm2,"0.25"\r\n')
    assert bio.read_csv_rows(table) == [{"id": "m1", "p_Drama": "0.5"}, {"id": "m2", "p_Drama": "0.25"}]


def check_safetensors(tmp):
    try:
        from safetensors.numpy import save_file
    except ImportError:
        print("SKIPPED read_safetensors: no safetensors in this Python")
        return
    path = os.path.join(tmp, "vote.safetensors")
    rows = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_file({"rows": rows}, path, metadata={"settings": "{}"})
    tensors, metadata = bio.read_safetensors(path)
    assert np.array_equal(tensors["rows"], rows) and metadata == {"settings": "{}"}
    save_file({"rows": rows}, path)
    assert bio.read_safetensors(path)[1] == {}
    refused(lambda: bio.read_safetensors(path, cap=16), "larger than")


def main():
    # A reader that waited on the FIFO would hang the tests; the alarm turns that into a failure.
    signal.alarm(60)
    with tempfile.TemporaryDirectory() as tmp:
        check_special_files(tmp)
        check_contents(tmp)
        check_safetensors(tmp)
    signal.alarm(0)
    print("bounded reads checked")


if __name__ == "__main__":
    main()
