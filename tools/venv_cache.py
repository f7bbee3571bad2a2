"""What the tools/ scripts that need pinned Python packages share: boomerang's cache folder (the
same choice as the Rust side's `runtime::cache_root`), a venv there made once per requirements
file (keyed by the file's sha256) and re-running a script inside it, and the file digests and
`SHA256SUMS` text that `boomerang manifest --write` also writes."""
import hashlib
import os
import shutil
import subprocess
import sys


def cache_root(who):
    """$BOOMERANG_CACHE_DIR, else $XDG_CACHE_HOME/boomerang, else ~/.cache/boomerang."""
    for var, tail in (("BOOMERANG_CACHE_DIR", ""), ("XDG_CACHE_HOME", "boomerang")):
        value = os.environ.get(var)
        if value:
            return os.path.join(value, tail) if tail else value
    home = os.environ.get("HOME")
    if not home:
        sys.exit(f"{who}: cannot tell where the cache is: set BOOMERANG_CACHE_DIR or HOME")
    return os.path.join(home, ".cache", "boomerang")


def in_venv(flag):
    return os.environ.get(flag) == "1"


def venv_path(who, requirements, name):
    """`<cache>/<name>/<tag>`, the tag keyed by the requirements file's sha256."""
    with open(requirements, "rb") as f:
        tag = hashlib.sha256(f.read()).hexdigest()[:12]
    return os.path.join(cache_root(who), name, tag)


def venv_ready(who, requirements, name):
    return os.path.isfile(os.path.join(venv_path(who, requirements, name), ".complete"))


class VenvError(Exception):
    """A venv that could not be made; the message says why and what to do."""


def venv_python(who, requirements, name, needs_gib=1, what="pinned packages"):
    """The python of [`venv_path`], creating that venv from `requirements` (binary wheels only)
    unless a finished one is there. Refuses before creating anything when the cache's disk has
    less than `needs_gib` free, and keeps no pip download cache: the wheels would take the space
    a second time."""
    venv = venv_path(who, requirements, name)
    python = os.path.join(venv, "bin", "python")
    if os.path.isfile(os.path.join(venv, ".complete")):
        return python
    parent = os.path.dirname(venv)
    os.makedirs(parent, exist_ok=True)
    free_gib = shutil.disk_usage(parent).free / (1 << 30)
    if free_gib < needs_gib:
        raise VenvError(f"{venv} needs about {needs_gib} GiB free for {what}; {free_gib:.1f} GiB is free "
                        f"there: free some space, or set BOOMERANG_CACHE_DIR to a larger disk")
    print(f"{who}: creating {venv} ({what}: about {needs_gib} GiB)", file=sys.stderr)
    try:
        subprocess.check_call([sys.executable, "-m", "venv", "--clear", venv])
        subprocess.check_call([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--no-input", "--no-cache-dir", "--only-binary", ":all:", "-r", requirements])
    except (OSError, subprocess.CalledProcessError) as error:
        # A half-made venv would only take the space again at the next try.
        shutil.rmtree(venv, ignore_errors=True)
        raise VenvError(f"could not make {venv}: {error}") from error
    open(os.path.join(venv, ".complete"), "w").close()
    return python


def reexec_in_venv(who, script, requirements, name, flag):
    """Runs `script` again (same arguments) with the python of [`venv_python`]; `flag` is set in
    the environment so the script knows it is inside."""
    try:
        python = venv_python(who, requirements, name)
    except VenvError as error:
        sys.exit(f"{who}: {error}")
    env = dict(os.environ, **{flag: "1"})
    os.execve(python, [python, os.path.abspath(script), *sys.argv[1:]], env)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_text(folder, manifest="SHA256SUMS"):
    """What `boomerang manifest --write` writes: `sha256  relative/path` for every file but the
    manifest itself, sorted by path."""
    lines = []
    for dirpath, _dirs, files in os.walk(folder, followlinks=True):
        for name in files:
            relative = os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/")
            if relative != manifest:
                lines.append((relative, sha256_file(os.path.join(dirpath, name))))
    return "".join(f"{digest}  {relative}\n" for relative, digest in sorted(lines))
