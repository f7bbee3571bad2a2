#!/usr/bin/env bash
# Renders the `boomerang audit --html` page of a synthetic run and screenshots it with headless
# Chromium, to check by eye that the page renders (CI does not run this; nothing is installed).
#
#   tools/screenshot_audit.sh [WORKDIR]      # default: a fresh temp folder
#
# Writes WORKDIR/audit.html and WORKDIR/audit.png. The synthetic run (240 rows at level `medium` of
# the demo policy with seeded distances, attempts and times, fake output files, and a run.json with
# every field a real `anonymize` run records) is written by the Python below, consistent with what
# the audit checks rows against run.json for: one level, its steps, scheduler, threshold and
# escalated strengths, and each seed derived from the run seed and the input's sha256 as
# src/diffusion/noise.rs image_seed does. The Python computes those seeds and the hash chain (from
# the formula in src/records/report.rs's documentation) itself: a second, independent
# implementation of both. Two things are tampered with so the page shows findings, and they are its
# only findings: one output file is replaced and a stray file named `<b>&.png` is dropped in the
# output folder (its name must show escaped). Same bytes on every run with the same checkout and
# WORKDIR (seeded, fixed times; run.json records their paths).
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
detector = sha(open(os.path.join(root, "models/face-detector/blazeface-full-range.onnx"), "rb").read())

# run.json's configuration, as `anonymize --policy policies/demo.toml --level medium --seed 20240501
# --report WORK/run.report.csv IN WORK/out` writes it (src/records/report.rs RunConfig: keys in
# alphabetical order). level_settings is the policy level serialized (kebab-case keys, sorted): the
# audit compares it with demo.toml's `medium`, so a change there shows up as findings here.
RUN_SEED = 20240501
LEVEL = {
    "eta": 1.0, "guidance": 1.0, "max-attempts": 3, "max-strength": 0.7, "name": "medium",
    "negative-prompt": "", "on-failure": "flag", "on-no-face": "whole-image", "prompt": "person",
    "rename-files": True, "scheduler": "ddim", "start": {"strength": 0.5}, "steps": 10,
    "strength-step": 0.1, "threshold": {"operating-point": "same-person"},
}
THRESHOLD = 0.6  # the embedder spec's `same-person` operating point
out = os.path.join(work, "out")
report = os.path.join(work, "run.report.csv")
config = {
    "batch": 1,
    "detector": os.path.join(root, "models/dlib-face", "../face-detector/blazeface-full-range.onnx"),
    "detector_sha256": detector, "device": "cpu",
    "embedder": os.path.join(root, "models/dlib-face/embedder.toml"), "embedder_sha256": embedder,
    "input": os.path.join(work, "in"), "level": LEVEL["name"], "level_settings": LEVEL,
    "model": os.path.join(root, "models/tiny-sd"), "model_sha256": model, "output": out,
    "policy": os.path.join(root, "policies/demo.toml"), "policy_sha256": policy, "report": report,
    "seed": RUN_SEED, "threads": 0,
}

def image_seed(run_seed, content_sha256_hex, sample_index):
    # src/diffusion/noise.rs image_seed: sha256 of a tag, the run seed (u64 little-endian), the
    # input's sha256 (32 bytes) and the sample index (u32 little-endian); the report records the
    # seed of the last attempt, sample index attempts - 1.
    return sha(b"boomerang/image-seed/v1" + run_seed.to_bytes(8, "little")
               + bytes.fromhex(content_sha256_hex) + sample_index.to_bytes(4, "little"))

def strength_for(attempt):
    # The level's escalation in whole millionths (policy::Level::strength_for_attempt).
    micros = lambda v: round(v * 1e6)
    base = micros(LEVEL["start"]["strength"])
    raised = base + micros(LEVEL["strength-step"]) * (attempt - 1)
    return max(min(raised, micros(LEVEL["max-strength"])), base) / 1e6

def start_timestep(strength):
    # DDIM over 1000 training steps, "leading" spacing with offset 1 (901, 801, ..., 1), entered
    # as diffusers' get_timesteps does (src/diffusion/pipeline.rs StartPlan).
    steps = LEVEL["steps"]
    t_start = steps - min(int(steps * strength), steps)
    return float(1000 // steps * (steps - 1 - t_start) + 1)

rng = random.Random(20240501)
rows = []
for i in range(240):
    folder = ("class_a", "class_b", "class_c")[i % 3]
    source = f"{folder}/person_{i:04d}.jpg"
    row = dict.fromkeys(COLUMNS[:-1], "")
    # The columns every row of a run shares (anonymize's RowContext), skipped and error rows too.
    row.update(input_path=source, level=LEVEL["name"], steps=str(LEVEL["steps"]),
               scheduler=LEVEL["scheduler"], threshold=repr(THRESHOLD), metric="euclidean",
               model_sha256=model, embedder_sha256=embedder, detector_sha256=detector,
               policy_sha256=policy, tool_version="boomerang 0.1.0")
    if i % 60 == 7:
        row.update(status="skipped", reason="not an image extension (.txt)",
                   input_path=f"{folder}/notes_{i}.txt")
    elif i % 80 == 13:
        row.update(status="error", reason="truncated JPEG (the data ends early)")
    else:
        input_sha = sha(source.encode())
        for attempt in range(1, LEVEL["max-attempts"] + 1):
            distance = round(rng.gauss(0.42 + 0.1 * attempt, 0.08), 4)
            if distance >= THRESHOLD:
                break
        strength = strength_for(attempt)
        certified = distance >= THRESHOLD
        output = f"{folder}/{sha(source.encode())[:16]}.png"
        data = f"synthetic output {output}".encode()
        path = os.path.join(out, output)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").write(data)
        rule = f"distance < {THRESHOLD}"
        row.update(status="certified" if certified else "failed",
                   reason=(f"closest face pair is not the same identity at operating point "
                           f"`same-person` ({rule})") if certified else
                          (f"still the same identity ({rule}) after {attempt} attempts; output "
                           f"kept and flagged (policy: on-failure = flag)"),
                   input_sha256=input_sha, output_path=output, output_sha256=sha(data),
                   strength=repr(strength), start_timestep=repr(start_timestep(strength)),
                   seed=image_seed(RUN_SEED, input_sha, attempt - 1), attempts=str(attempt),
                   distance=repr(distance), faces_in="1", faces_out="1", width="250",
                   height="250", milliseconds=str(int(attempt * rng.uniform(1100, 1500))))
    rows.append(row)

previous = sha(",".join(COLUMNS).encode())
lines = [",".join(COLUMNS)]
for row in rows:
    body = csv_text([row[c] for c in COLUMNS[:-1]])
    previous = sha((previous + body).encode())
    lines.append(f"{body},{previous}")
open(report, "w", newline="").write("\n".join(lines) + "\n")

counts = {s: sum(r["status"] == s for r in rows) for s in ("certified", "failed", "error", "skipped")}
record = {
    "tool_version": "boomerang 0.1.0", "config": config,
    "onnxruntime_version": "1.31.1",
    "onnxruntime_library": "/root/.cache/boomerang/onnxruntime/1.31.1/libonnxruntime.so.1.31.1",
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
