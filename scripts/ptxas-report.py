#!/usr/bin/env python3
"""Compiles CUDA sources with NVRTC for sm_90a and prints ptxas' register, stack and spill
report for each, with no GPU: the check behind the tensor-core tilings' register budgets.
With --opcodes, also the kernel's static SASS instruction count (nvdisasm), in total and by the
classes that matter to the attention loop: what told where the exact kernel's instructions went.

The CUDA 13.0 compiler pieces (NVRTC, ptxas, headers) come from the package index as wheels,
unpacked once into .cache/cuda-tools (about 130 MB). Generate the sources first:

    cargo run -p kernels-cubecl --features cuda --example tensor_core_source -- .cache/cu
    python3 scripts/ptxas-report.py .cache/cu [--fail-on-spill] [--opcodes]

Exit status 1 if a source does not compile, or (--fail-on-spill) if one spills registers.
"""
import ctypes
import glob
import os
import re
import subprocess
import sys
import tempfile
import zipfile

WHEELS = ["nvidia-cuda-nvrtc==13.0.*", "nvidia-cuda-crt==13.0.*", "nvidia-cuda-runtime==13.0.*",
          "nvidia-cuda-nvcc==13.0.*", "nvidia-cuda-cccl==13.0.*"]
# nvdisasm has no 13.0 wheel on the index; any 13.x reads sm_90a cubins.
DISASSEMBLER = "nvidia-cuda-nvdisasm>=13,<14"
# SASS opcode classes of the --opcodes report, in its column order; the rest count as "other".
CLASSES = [("mma", {"HMMA"}), ("ldmatrix", {"LDSM"}), ("cp.async", {"LDGSTS"}), ("exp", {"MUFU"}),
           ("float", {"FFMA", "FMUL", "FADD", "FMNMX", "FSETP", "FSEL", "F2FP"}),
           ("index", {"IMAD", "IADD3", "LEA", "SHF", "LOP3", "SEL", "ISETP", "VIADD", "MOV"})]
CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".cache", "cuda-tools")


def fetch(packages):
    """Downloads the wheels of `packages` and unpacks them into the cache."""
    with tempfile.TemporaryDirectory() as wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "--platform", "manylinux_2_17_x86_64",
                        "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_12_x86_64",
                        "--python-version", "3.11", "-d", wheels, *packages], check=True)
        for wheel in glob.glob(os.path.join(wheels, "*.whl")):
            zipfile.ZipFile(wheel).extractall(CACHE)


def tools(disassembler=False):
    """The unpacked toolkit root (lib/, bin/, include/), fetched on first use."""
    root = os.path.join(CACHE, "nvidia", "cu13")
    for tool, packages in [("ptxas", WHEELS), ("nvdisasm", [DISASSEMBLER] if disassembler else [])]:
        path = os.path.join(root, "bin", tool)
        if packages and not os.path.exists(path):
            fetch(packages)
            os.chmod(path, 0o755)
    return root


def opcode_counts(root, cubin):
    """Instructions of the cubin's SASS (NOPs left out), by class of CLASSES, "other" and total."""
    sass = subprocess.run([os.path.join(root, "bin", "nvdisasm"), "-c", cubin], capture_output=True,
                          text=True, check=True).stdout
    counts = {name: 0 for name, _ in CLASSES} | {"other": 0, "total": 0}
    for opcode in re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_]+)", sass):
        if opcode == "NOP":
            continue
        name = next((name for name, opcodes in CLASSES if opcode in opcodes), "other")
        counts[name] += 1
        counts["total"] += 1
    return counts


def compile_ptx(nvrtc, root, path):
    """The PTX of one source, or the NVRTC log as an exception."""
    program = ctypes.c_void_p()
    source = open(path, "rb").read()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, None, 0, None, None) != 0:
        raise RuntimeError("nvrtcCreateProgram failed")
    options = [b"--gpu-architecture=sm_90a", f"--include-path={root}/include".encode(),
               f"--include-path={root}/include/cccl".encode()]
    status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    if status != 0:
        nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(program, log)
        raise RuntimeError(log.value.decode()[:4000])
    nvrtc.nvrtcGetPTXSize(program, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetPTX(program, ptx)
    return ptx.value


def main():
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    fail_on_spill = "--fail-on-spill" in sys.argv
    opcodes = "--opcodes" in sys.argv
    if len(args) != 1:
        sys.exit(__doc__)
    root = tools(disassembler=opcodes)
    # NVRTC loads its builtins library by name from the same folder.
    ctypes.CDLL(os.path.join(root, "lib", "libnvrtc-builtins.so.13.0"), mode=ctypes.RTLD_GLOBAL)
    nvrtc = ctypes.CDLL(os.path.join(root, "lib", "libnvrtc.so.13"))
    failed = False
    columns = [name for name, _ in CLASSES] + ["other", "total"] if opcodes else []
    print(f"{'kernel':<40} {'registers':>9} {'stack':>6} {'spill st':>8} {'spill ld':>8}"
          + "".join(f" {column:>9}" for column in columns))
    for path in sorted(glob.glob(os.path.join(args[0], "*.cu"))):
        name = os.path.basename(path)[:-3]
        try:
            ptx = compile_ptx(nvrtc, root, path)
        except RuntimeError as error:
            print(f"{name:<40} NVRTC failed:\n{error}")
            failed = True
            continue
        with tempfile.TemporaryDirectory() as scratch:
            source = os.path.join(scratch, "kernel.ptx")
            cubin = os.path.join(scratch, "kernel.cubin")
            open(source, "wb").write(ptx)
            report = subprocess.run([os.path.join(root, "bin", "ptxas"), "-arch=sm_90a", "-v", source,
                                     "-o", cubin], capture_output=True, text=True).stderr
            counts = opcode_counts(root, cubin) if opcodes else {}
        registers = re.search(r"Used (\d+) registers", report)
        stack, stores, loads = (int(value) for value in re.search(
            r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", report).groups())
        print(f"{name:<40} {registers.group(1) if registers else '?':>9} {stack:>6} {stores:>8} {loads:>8}"
              + "".join(f" {counts[column]:>9}" for column in columns))
        failed |= fail_on_spill and (stores > 0 or loads > 0)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
