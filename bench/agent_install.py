"""The agent's install size and import time: a fresh virtual environment with only `edgeatlas[agent]`.

Prints the environment's size on disk (total, and the largest packages), and the median wall time
of a cold `python -c "import edgeatlas.agent.loop"` beside a bare `python -c pass`.

    python bench/agent_install.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def timed(python: Path, code: str, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(python), "-c", code], check=True, cwd=python.parent)  # not the repo: its edgeatlas/ would shadow
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="build the environment here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = Path(args.keep or tmp) / "agent-env"
        venv.create(env, with_pip=True)
        python = env / "bin" / "python"
        t0 = time.perf_counter()
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"{REPO}[agent]"], check=True)
        install_s = time.perf_counter() - t0
        site = next((env / "lib").glob("python*/site-packages"))
        packages = sorted(((size_mb(p), p.name) for p in site.iterdir() if p.is_dir() and "dist-info" not in p.name),
                          reverse=True)
        print(f"fresh venv with edgeatlas[agent] on Python {sys.version.split()[0]}: installed in {install_s:.0f} s")
        print(f"  environment on disk: {size_mb(env):.1f} MB (site-packages {size_mb(site):.1f} MB; "
              f"pip and setuptools included)")
        print("  largest: " + ", ".join(f"{name} {mb:.1f} MB" for mb, name in packages[:6]))
        heavy = [n for _, n in packages if n in ("torch", "torch_geometric", "flwr", "streamlit", "sqlalchemy")]
        print(f"  heavy stacks present: {heavy or 'none'}")
        bare = timed(python, "pass")
        agent = timed(python, "import edgeatlas.agent.loop, edgeatlas.agent.runners.onnxruntime, onnxruntime")
        print(f"  import time (median of 7, cold process): agent {agent * 1000:.0f} ms, "
              f"bare interpreter {bare * 1000:.0f} ms, agent's own {max(0.0, agent - bare) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
