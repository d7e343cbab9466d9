"""The installed llama.cpp is the portable build: no AMX kernels, no instruction beyond the x86-64 baseline it was
built for, whatever CPU built it (scripts/llama-wheel.sh). Read off the shared libraries, so it holds on a machine
where a native build would not crash too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path

import pytest

spec = find_spec("llama_cpp")
if spec is None or not spec.submodule_search_locations:
    pytest.skip("the local text model needs: pip install 'contentmill[local]'", allow_module_level=True)
if os.uname().machine not in {"x86_64", "amd64"}:
    pytest.skip("the x86-64 baseline is checked on x86-64 only", allow_module_level=True)

LIB = Path(next(iter(spec.submodule_search_locations))) / "lib"
# AVX-512 uses the zmm registers or the k mask registers; AMX the tile registers and its tile instructions.
BEYOND_BASELINE = re.compile(r"%zmm\d|%k[1-7]\b|%tmm\d|\btile(loadd|stored|zero|release)|\btdp", re.MULTILINE)


def libraries() -> list[Path]:
    found = sorted({path.resolve() for path in LIB.glob("lib*.so*")})  # each file once, not once per link
    assert found, f"no llama.cpp libraries under {LIB}"
    return found


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (binutils)")
    return path


def test_no_amx_backend_is_built_in() -> None:
    nm = tool("nm")
    for library in libraries():
        symbols = subprocess.run([nm, "-D", "--defined-only", str(library)], capture_output=True, text=True,
                                 check=True).stdout
        assert "ggml_backend_amx" not in symbols, f"{library.name} carries the AMX backend"


def test_no_instruction_beyond_avx2() -> None:
    objdump = tool("objdump")
    uses_avx2 = False
    for library in libraries():
        code = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(library)], capture_output=True, text=True,
                              check=True).stdout
        beyond = [match.group(0) for match in BEYOND_BASELINE.finditer(code)]
        assert not beyond, f"{library.name} uses AVX-512 or AMX ({len(beyond)} places, e.g. {beyond[0]})"
        uses_avx2 = uses_avx2 or (library.name.startswith("libggml-cpu") and "%ymm" in code)
    assert uses_avx2, "the CPU backend has its AVX2 kernels"
