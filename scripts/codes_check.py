"""Codes of the same model files on real images, compared across machines and library versions (scripts/test-aarch64.sh).

    python scripts/codes_check.py encode OUT.json MODEL.onnx...      # the first 100 Fashion-MNIST test images
    python scripts/codes_check.py compare REF.json OTHER.json... [--out SUMMARY.json]

`compare` fails (exit 1) unless every FP32 model's packed codes are byte-identical to the reference's and every INT8
model's (precision int8-*) agree in at least 99.5 % of their bits; with --preprocessing-differs, FP32 models too need
only that agreement (for an OpenCV whose resize rounds differently on the other machine). Only sadh.sdk and numpy.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from sadh.sdk.atomic import atomic_write_text
from sadh.sdk.data.fashion_mnist import find_fashion_mnist
from sadh.sdk.data.idx import read_idx
from sadh.sdk.encoder import Encoder

IMAGES = 100  # the first of Fashion-MNIST's test images (FP32 convolutions run at ~0.6 s per image under qemu)
MIN_INT8_BIT_AGREEMENT = 0.995
VERSIONED = ("numpy", "onnxruntime", "onnxruntime-gpu", "opencv-python-headless")


def versions() -> dict[str, str]:
    """Python, machine and the runtime's libraries as installed here."""
    found = {"python": platform.python_version(), "machine": platform.machine()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def encode(out: Path, models: list[Path]) -> None:
    """Write the packed codes (hex, one string per image) of each model on the fixed images, with the versions used."""
    images = read_idx(find_fashion_mnist()["test_images"])[:IMAGES]
    codes = {}
    for model in models:
        encoder = Encoder(model, providers=["CPUExecutionProvider"])
        codes[model.name] = {"precision": encoder.precision, "codes": [row.tobytes().hex() for row in encoder.encode(images)]}
    atomic_write_text(out, json.dumps({"versions": versions(), "images": IMAGES, "models": codes}, indent=1) + "\n")
    print(f"[codes] {out}: {', '.join(codes)} on {IMAGES} images ({versions()})")


def packed(entry: dict) -> np.ndarray:
    """The codes of one model entry as uint8 (images, bytes)."""
    return np.array([np.frombuffer(bytes.fromhex(h), np.uint8) for h in entry["codes"]])


def compare(ref_path: Path, others: list[Path], summary: Path | None, exact_fp32: bool = True) -> bool:
    """Print and check the agreement of each file's codes with the reference's; True when all pass."""
    ref = json.loads(ref_path.read_text())
    rows, ok = [], True
    for path in others:
        other = json.loads(path.read_text())
        for name, entry in ref["models"].items():
            a, b = packed(entry), packed(other["models"][name])
            agreement = 1 - float(np.unpackbits(a ^ b).mean())
            identical = int((a == b).all(axis=1).sum())
            exact = exact_fp32 and not entry["precision"].startswith("int8")
            passed = identical == len(a) if exact else agreement >= MIN_INT8_BIT_AGREEMENT
            ok &= passed
            rows.append({"reference": ref["versions"], "other": other["versions"], "model": name, "precision": entry["precision"],
                         "images": len(a), "identical_images": identical, "bit_agreement": agreement,
                         "rule": "identical" if exact else f">= {MIN_INT8_BIT_AGREEMENT:.1%} of bits", "passed": passed})
            print(f"[codes] {name} ({entry['precision']}): {other['versions']['machine']} {_libs(other)} vs "
                  f"{ref['versions']['machine']} {_libs(ref)}: {identical}/{len(a)} images identical, "
                  f"{100 * agreement:.3f} % of bits agree -> {'ok' if passed else 'FAILED'}")
    if summary is not None:
        atomic_write_text(summary, json.dumps(rows, indent=2) + "\n")
    return ok


def _libs(report: dict) -> str:
    """Short version string of one report: python, numpy, onnxruntime, opencv."""
    v = report["versions"]
    ort = v.get("onnxruntime") or v.get("onnxruntime-gpu")
    return f"(py {v['python']}, numpy {v.get('numpy')}, ort {ort}, opencv {v.get('opencv-python-headless', 'system')})"


def main() -> int:
    """Command line: encode | compare."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode")
    enc.add_argument("out", type=Path)
    enc.add_argument("models", type=Path, nargs="+")
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("reference", type=Path)
    cmp_.add_argument("others", type=Path, nargs="+")
    cmp_.add_argument("--out", type=Path, default=None, help="write the comparison rows as JSON")
    cmp_.add_argument("--preprocessing-differs", action="store_true", help="FP32 codes too need only the INT8 bit agreement")
    args = parser.parse_args()
    if args.command == "encode":
        encode(args.out, args.models)
        return 0
    return 0 if compare(args.reference, args.others, args.out, exact_fp32=not args.preprocessing_differs) else 1


if __name__ == "__main__":
    sys.exit(main())
