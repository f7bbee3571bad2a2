#!/usr/bin/env bash
# Renders the `boomerang audit --html` page of a synthetic run and screenshots it with headless
# Chromium, to check by eye that the page renders (CI does not run this; nothing is installed).
#
#   tools/screenshot_audit.sh [WORKDIR]      # default: a fresh temp folder
#
# Writes WORKDIR/audit.html and WORKDIR/audit.png. The synthetic run (240 rows, two levels of the demo policy
# with seeded distances, attempts and times, fake output files, run.json) is written by the Python
# below, which computes the hash chain from the formula in src/records/report.rs's documentation: a second,
# independent implementation of it. Two things are tampered with so the page shows findings: one
# output file is replaced and a stray file named `<b>&.png` is dropped in the output folder (its
# name must show escaped). Same bytes on every run (seeded, fixed times).
#
# Needs python3, cargo (or BOOMERANG=path/to/boomerang) and /usr/bin/chromium (Debian: `apt-get
# install chromium`). Without Chromium it stops after writing the page, with exit status 2.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
boomerang="${BOOMERANG:-}"
if [[ -z "$boomerang" ]]; then
    cargo build --quiet --manifest-path "$root/Cargo.toml" --bin boomerang
    boomerang="$root/target/debug/boomerang"
fi

rm -rf "$work/out" "$work/run.report.csv" "$work/run.run.json"
python3 - "$root" "$work" <<'PY'
import csv, hashlib, io, json, os, random, sys

root, work = sys.argv[1], sys.argv[2]
COLUMNS = ("input_path,input_sha256,output_path,output_sha256,status,reason,level,strength,"
           "start_timestep,steps,scheduler,seed,attempts,distance,threshold,metric,faces_in,"
           "faces_out,model_sha256,embedder_sha256,detector_sha256,policy_sha256,width,height,milliseconds,"
           "tool_version,chain").split(",")

def sha(data):
    return hashlib.sha256(data).hexdigest()

def csv_text(fields):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerow(fields)
    return buffer.getvalue()[:-1]

policy = sha(open(os.path.join(root, "policies/demo.toml"), "rb").read())
# anonymize records the embedder spec file's sha256.
embedder = sha(open(os.path.join(root, "models/dlib-face/embedder.toml"), "rb").read())
# The model hash is the sha256 of the SHA256SUMS text (src/diffusion/model_manifest.rs).
model = sha(open(os.path.join(root, "models/tiny-sd/SHA256SUMS"), "rb").read())
# The face detector the embedder spec pins (detector-sha256).
detector = sha(open(os.path.join(root, "models/face-detector/blazeface-short-range.onnx"), "rb").read())

rng = random.Random(20240501)
out = os.path.join(work, "out")
rows = []
for i in range(240):
    folder = ("class_a", "class_b", "class_c")[i % 3]
    source = f"{folder}/person_{i:04d}.jpg"
    row = dict.fromkeys(COLUMNS[:-1], "")
    row.update(input_path=source, input_sha256=sha(source.encode()), model_sha256=model,
               embedder_sha256=embedder, detector_sha256=detector, policy_sha256=policy,
               tool_version="0.1.0")
    if i % 60 == 7:
        row.update(status="skipped", reason="not an image extension (.txt)",
                   input_path=f"{folder}/notes_{i}.txt")
    elif i % 80 == 13:
        row.update(status="error", reason="cannot decode: unexpected end of file")
    else:
        level, start = ("high", 0.7) if i % 4 == 3 else ("medium", 0.5)
        for attempt in (1, 2, 3):
            distance = round(rng.gauss(0.42 + 0.1 * attempt + (start - 0.5) / 2, 0.08), 4)
            if distance >= 0.6:
                break
        strength = round(start + 0.1 * (attempt - 1), 6)
        output = f"{folder}/{sha(source.encode())[:12]}.png"
        data = f"synthetic output {output}".encode()
        path = os.path.join(out, output)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").write(data)
        row.update(status="certified" if distance >= 0.6 else "failed",
                   reason="" if distance >= 0.6 else "still the same person after 3 attempts",
                   output_path=output, output_sha256=sha(data), level=level,
                   strength=repr(strength), start_timestep=repr(strength * 1000), steps="10",
                   scheduler="ddim", seed=sha(f"seed {i} {attempt}".encode()),
                   attempts=str(attempt), distance=repr(distance), threshold="0.6",
                   metric="euclidean", faces_in="1", faces_out="1", width="250", height="250",
                   milliseconds=str(int(attempt * rng.uniform(1100, 1500))))
    rows.append(row)

previous = sha(",".join(COLUMNS).encode())
lines = [",".join(COLUMNS)]
for row in rows:
    body = csv_text([row[c] for c in COLUMNS[:-1]])
    previous = sha((previous + body).encode())
    lines.append(f"{body},{previous}")
report = os.path.join(work, "run.report.csv")
open(report, "w", newline="").write("\n".join(lines) + "\n")

counts = {s: sum(r["status"] == s for r in rows) for s in ("certified", "failed", "error", "skipped")}
record = {
    "tool_version": "0.1.0",
    "config": {"level": "medium", "policy": "policies/demo.toml", "policy_sha256": policy,
               "model_sha256": model, "embedder_sha256": embedder, "detector_sha256": detector},
    "onnxruntime_version": "1.31.1", "onnxruntime_library": "libonnxruntime.so.1.31.1",
    "execution_provider": "cpu", "counts": counts, "started": "2024-05-01T10:00:00Z",
    "finished": "2024-05-01T10:09:41Z", "report_path": report, "report_rows": len(rows),
    "report_chain_head": previous, "reidentification_rate": 0.0125,
    "reidentification_chance": 1 / 233,
}
open(os.path.join(work, "run.run.json"), "w").write(json.dumps(record, indent=2) + "\n")

# Tampering, so the page has findings to show.
first = next(r for r in rows if r["output_path"])
open(os.path.join(out, first["output_path"]), "wb").write(b"not the certified output")
open(os.path.join(out, "class_a", "<b>&.png"), "wb").write(b"stray")
PY

set +e
"$boomerang" audit "$work/run.report.csv" --outputs "$work/out" \
    --policy "$root/policies/demo.toml" --model "$root/models/tiny-sd" \
    --embedder "$root/models/dlib-face/embedder.toml" --html "$work/audit.html"
status=$?
set -e
if [[ $status -ne 3 ]]; then
    echo "expected exit status 3 (two planted findings), got $status" >&2
    exit 1
fi

if [[ ! -x /usr/bin/chromium ]]; then
    echo "no /usr/bin/chromium: page written to $work/audit.html, no screenshot" >&2
    exit 2
fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
    --screenshot="$work/audit.png" --window-size=1200,1600 "file://$work/audit.html" 2>/dev/null
echo "screenshot: $work/audit.png"
