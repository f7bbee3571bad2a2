"""What the tools/ scripts that need pinned Python packages share: boomerang's cache folder (the
same choice as the Rust side's `runtime::cache_root`) and re-running the script inside its own
venv there, made once per requirements file (keyed by the file's sha256)."""
import hashlib
import os
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


def reexec_in_venv(who, script, requirements, name, flag):
    """Runs `script` again (same arguments) with the python of `<cache>/<name>/<tag>`, creating
    that venv from `requirements` (binary wheels only) unless a finished one is there; `flag`
    is set in the environment so the script knows it is inside."""
    venv = venv_path(who, requirements, name)
    python = os.path.join(venv, "bin", "python")
    if not os.path.isfile(os.path.join(venv, ".complete")):
        print(f"{who}: creating {venv}", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", "--clear", venv])
        subprocess.check_call([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--no-input", "--only-binary", ":all:", "-r", requirements])
        open(os.path.join(venv, ".complete"), "w").close()
    env = dict(os.environ, **{flag: "1"})
    os.execve(python, [python, os.path.abspath(script), *sys.argv[1:]], env)
