"""scripts/install.sh in its dry-run mode: the extras and llama.cpp build flags it picks with fake GPU tools on PATH.

The script is copied into an empty project folder and run with PATH holding only `dirname` and the fakes, so a real
nvcc or nvidia-smi on the test machine (this image carries a CUDA toolkit without a GPU) cannot leak in, and the
copy shows that a dry run creates no .venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_NVIDIA_SMI = "#!/bin/sh\necho 'GPU 0: Tesla T4 (UUID: GPU-00000000-0000-0000-0000-000000000000)'\n"
FAKE_NVCC = "#!/bin/sh\necho 'Cuda compilation tools, release 12.4'\n"


def dry_run(tmp_path: Path, *tools: str, extras: str | None = None) -> str:
    """Run a copy of install.sh with MEDTUNE_INSTALL_DRY_RUN=1 and only ``tools`` (fakes) on PATH; return stdout."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "install.sh", project / "scripts" / "install.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dirname = shutil.which("dirname")
    assert dirname is not None
    (bin_dir / "dirname").symlink_to(dirname)
    for tool in tools:
        fake = bin_dir / tool
        fake.write_text({"nvidia-smi": FAKE_NVIDIA_SMI, "nvcc": FAKE_NVCC}[tool])
        fake.chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "MEDTUNE_INSTALL_DRY_RUN": "1"}
    if extras is not None:
        env["MEDTUNE_EXTRAS"] = extras
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run([bash, str(project / "scripts" / "install.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert not (project / ".venv").exists()  # the dry run exits before anything is created or installed
    assert "pip" not in done.stderr
    return done.stdout


def extras_line(out: str) -> list[str]:
    """The extras the dry run chose."""
    (line,) = [line for line in out.splitlines() if ": extras: " in line]
    return line.split(": extras: ", 1)[1].split(",")


def test_gpu_and_nvcc_choose_the_gpu_extra_and_a_cuda_llama_cpp_build(tmp_path: Path) -> None:
    out = dry_run(tmp_path, "nvidia-smi", "nvcc")
    assert "gpu" in extras_line(out) and "vllm" not in extras_line(out)
    assert "CMAKE_ARGS=-DGGML_CUDA=on" in out
    assert 'CMAKE_ARGS="-DGGML_CUDA=on"' in out and '".[train,eval,guard,serve,ui,rag,dev,gpu]"' in out
    assert "converter_dir()" in out  # the GGUF converter is placed at install time


def test_no_gpu_tools_keeps_the_cpu_default(tmp_path: Path) -> None:
    out = dry_run(tmp_path)
    assert extras_line(out) == ["train", "eval", "guard", "serve", "ui", "rag", "dev"]
    assert "GGML_CUDA" not in out and "CPU build" in out
    assert '".[train,eval,guard,serve,ui,rag,dev]"' in out


def test_gpu_without_nvcc_builds_llama_cpp_for_the_cpu_and_says_why_in_one_line(tmp_path: Path) -> None:
    out = dry_run(tmp_path, "nvidia-smi")
    assert "gpu" in extras_line(out) and "GGML_CUDA" not in out
    notices = [line for line in out.splitlines() if "no nvcc" in line]
    assert len(notices) == 1 and "built for the CPU" in notices[0] and "CUDA toolkit" in notices[0]


def test_nvcc_without_a_gpu_stays_a_cpu_install(tmp_path: Path) -> None:
    # a CUDA toolkit alone (this very image has one) is no GPU: a CUDA llama.cpp would not load without the driver
    out = dry_run(tmp_path, "nvcc")
    assert "gpu" not in extras_line(out) and "GGML_CUDA" not in out
    assert "no NVIDIA GPU" in out


@pytest.mark.parametrize("tools", [(), ("nvidia-smi", "nvcc")])
def test_vllm_and_gpu_are_installed_when_named(tmp_path: Path, tools: tuple[str, ...]) -> None:
    out = dry_run(tmp_path, *tools, extras="train,serve,gpu,vllm")
    assert extras_line(out) == ["train", "serve", "gpu", "vllm"]
    assert ("CMAKE_ARGS=-DGGML_CUDA=on" in out) == bool(tools)


def test_script_passes_bash_syntax_check() -> None:
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "install.sh")], timeout=30).returncode == 0
    assert os.access(REPO / "scripts" / "install.sh", os.R_OK)


FAKE_VENV_PYTHON = """#!/bin/sh
# records each call with the CMAKE_ARGS it sees; llama.cpp reports no GPU offload, so the script must rebuild it
echo "CMAKE_ARGS=${CMAKE_ARGS:-}|$*" >> "$(dirname "$0")/../calls.log"
case "$*" in
  *llama_supports_gpu_offload*) exit 1 ;;
  *"m.version('llama-cpp-python')"*) echo 0.3.36 ;;
esac
exit 0
"""


def fake_install(tmp_path: Path, *tools: str) -> tuple[list[str], str]:
    """Run the real (not dry) path of install.sh with MEDTUNE_EXTRAS=train,serve and a fake .venv/bin/python that only
    records what it is asked to run; return (its calls, stdout)."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "install.sh", project / "scripts" / "install.sh")
    venv_python = project / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(FAKE_VENV_PYTHON)
    venv_python.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))  # type: ignore[arg-type]
    for tool in tools:
        (bin_dir / tool).write_text({"nvidia-smi": FAKE_NVIDIA_SMI, "nvcc": FAKE_NVCC}[tool])
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "MEDTUNE_EXTRAS": "train,serve"}
    done = subprocess.run([shutil.which("bash") or "bash", str(project / "scripts" / "install.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("medtune install: done (.venv/bin/medtune --help)")
    return (project / ".venv" / "calls.log").read_text().splitlines(), done.stdout


def test_the_install_passes_the_cuda_flags_to_pip_and_rebuilds_a_cpu_llama_cpp(tmp_path: Path) -> None:
    calls, out = fake_install(tmp_path, "nvidia-smi", "nvcc")
    (main,) = [c for c in calls if "install -e" in c]
    assert main.startswith("CMAKE_ARGS=-DGGML_CUDA=on|") and main.endswith("install -e .[train,serve,gpu]")
    (rebuild,) = [c for c in calls if "--force-reinstall" in c]
    assert rebuild.startswith("CMAKE_ARGS=-DGGML_CUDA=on|") and "--no-cache-dir" in rebuild
    assert rebuild.endswith("llama-cpp-python==0.3.36") and "building llama-cpp-python 0.3.36 with CUDA" in out
    assert any("converter_dir()" in c for c in calls)  # the GGUF converter is placed at install time


def test_the_cpu_install_runs_as_before(tmp_path: Path) -> None:
    calls, _ = fake_install(tmp_path)
    (main,) = [c for c in calls if "install -e" in c]
    assert main == "CMAKE_ARGS=|-m pip --disable-pip-version-check -q install -e .[train,serve]"
    assert not [c for c in calls if "--force-reinstall" in c or "llama_supports_gpu_offload" in c]
    assert any("converter_dir()" in c for c in calls)
