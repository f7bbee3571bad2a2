"""Reads the stage table `boomerang ... --timings` prints (src/diffusion/timing.rs), for the
benchmarks that compare boomerang with another runtime (tools/bench_vs_optimum.py,
tools/gpu/bench_gpu.py)."""
import collections
import re

Stage = collections.namedtuple("Stage", "calls seconds in_runtime first")

ROW = re.compile(
    r"^(text encoder|VAE encode|UNet steps|scheduler|VAE decode|image I/O)"
    r"\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+%\s+([\d.]+)$")
OUTSIDE = re.compile(r"outside ([\d.]+)% of wall time")


def parse(stdout):
    """({stage label: Stage}, share of wall time outside ONNX Runtime), or None where boomerang
    printed no table."""
    stages = {}
    for line in stdout.splitlines():
        match = ROW.match(line)
        if match:
            stages[match.group(1)] = Stage(int(match.group(2)), float(match.group(3)),
                                           float(match.group(4)), float(match.group(5)))
    outside = OUTSIDE.search(stdout)
    if "UNet steps" not in stages or outside is None:
        return None
    return stages, float(outside.group(1)) / 100
