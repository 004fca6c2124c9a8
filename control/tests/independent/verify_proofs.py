#!/usr/bin/env python3
"""An independent check of jitgate's audit proofs: RFC 9162 inclusion and
consistency verification written from the RFC with the standard library
only (hashlib, base64, json), sharing no code with the service.

Reads on stdin {"inclusion": [answers of GET /v1/audit/{seq}/proof],
"consistency": [answers of GET /v1/audit/consistency]}. Each proof is
checked against the root in the signed checkpoint note it came with (the
Ed25519 signature on the note is not checked here: the standard library has
no Ed25519). Prints "ok <n>" and exits 0 when every proof holds; otherwise
prints the first failure and exits 1.
"""

import base64
import hashlib
import json
import sys


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def note_head(note: str):
    """(origin, size, root) of a C2SP checkpoint note."""
    body, _, signatures = note.partition("\n\n")
    if not signatures.startswith("\u2014 "):
        raise ValueError("no signature line")
    origin, size, root = body.split("\n")[:3]
    return origin, int(size), base64.b64decode(root, validate=True)


def verify_inclusion(index: int, size: int, leaf: bytes, path, root: bytes) -> bool:
    # RFC 9162 section 2.1.3.2
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, path) -> bool:
    # RFC 9162 section 2.1.4.2
    if first == second:
        return not path and first_root == second_root
    if first == 0 or first > second or not path:
        return False
    if first & (first - 1) == 0:
        path = [first_root] + list(path)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def main() -> int:
    data = json.load(sys.stdin)
    checked = 0
    for answer in data.get("inclusion", []):
        _, size, root = note_head(answer["checkpoint"])
        leaf_input = answer["leaf_input"].encode()
        # The leaf input must be the record it claims to be.
        if json.loads(answer["leaf_input"])[0] != answer["seq"] or size != answer["tree_size"]:
            print(f"inclusion of {answer['seq']}: the answer contradicts itself")
            return 1
        path = [bytes.fromhex(h) for h in answer["proof"]]
        if not verify_inclusion(answer["seq"] - 1, size, leaf_hash(leaf_input), path, root):
            print(f"inclusion of record {answer['seq']} in checkpoint {size}: proof does not verify")
            return 1
        checked += 1
    for answer in data.get("consistency", []):
        origin1, first, first_root = note_head(answer["from_checkpoint"])
        origin2, second, second_root = note_head(answer["to_checkpoint"])
        path = [bytes.fromhex(h) for h in answer["proof"]]
        if origin1 != origin2 or not verify_consistency(first, second, first_root, second_root, path):
            print(f"consistency {first} -> {second}: proof does not verify")
            return 1
        checked += 1
    print(f"ok {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
