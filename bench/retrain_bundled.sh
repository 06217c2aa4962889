#!/usr/bin/env bash
# Reproduce the bundled models (src/vqforge/bundled/{fashion,landscapes}) from scratch with vqforge's own commands,
# exactly as they were made (docs/models.md gives steps, wall times and the machine). Resumable: each stage is
# skipped when its run directory is complete; an interrupted stage continues with --resume.
#
#   bench/retrain_bundled.sh [WORK_DIR] [DATA_ROOT]
#
# WORK_DIR (default runs/bundled): run directories, token datasets and file lists.
# DATA_ROOT (default ../shared/data): the example data (S-FLCKR, COCO, D-RIN photos and S-FLCKR segmentation maps;
#   layout in docs/models.md). Fashion-MNIST comes from Debian's dataset-fashion-mnist (or VQFORGE_FASHION_MNIST).
# Threads: OMP_NUM_THREADS (the bundled models were trained with 1 thread per run, several runs side by side).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/bundled}
D=${2:-../shared/data}
VQ="${VQFORGE:-.venv/bin/vqforge}"
C=configs/bundled
mkdir -p "$W/lists"

# Held out from every landscape run: the photos bundled in src/vqforge/demo_assets/photos (validation and demo),
# and the four S-FLCKR maps bundled in src/vqforge/demo_assets/segmentations (the demo synthesises from them).
ls src/vqforge/demo_assets/photos | sed -e 's/^coco_//' -e 's/^drin_//' -e 's/^sflckr_//' -e 's/\.jpg$//' > "$W/lists/held_ids.txt"
ls src/vqforge/demo_assets/segmentations | sed -e 's/^sflckr_//' -e 's/\.png$//' > "$W/lists/held_maps.txt"
ls "$D"/sflckr_images/*/*.jpg "$D"/coco_images/*.jpg "$D"/drin_images/*/*.JPEG | grep -v -F -f "$W/lists/held_ids.txt" > "$W/lists/photos_train.txt"
ls "$D"/sflckr_images/*/*.jpg "$D"/coco_images/*.jpg "$D"/drin_images/*/*.JPEG | grep -F -f "$W/lists/held_ids.txt" > "$W/lists/photos_val.txt"
ls "$D"/sflckr_segmentations/*/*.png | grep -v -F -f "$W/lists/held_maps.txt" > "$W/lists/seg_train.txt"
# the landscape transformer's photos: links to the S-FLCKR photos whose maps are in seg_train.txt, in the same
# <scene>/<id> layout as the maps (so that `encode --cond-data` pairs them)
rm -rf "$W/landscape_photos"
sed -e "s#^$D/sflckr_segmentations/##" -e 's/\.png$//' "$W/lists/seg_train.txt" | while read -r rel; do
  mkdir -p "$W/landscape_photos/$(dirname "$rel")"
  ln -s "$(realpath "$D/sflckr_images/$rel.jpg")" "$W/landscape_photos/$rel.jpg"
done

stage() {  # stage RUN_DIR COMMAND...: run a training command unless RUN_DIR is complete; resume if interrupted
  local run=$1; shift
  if [ -f "$run/DONE" ]; then echo "== $run: done"; return; fi
  if [ -f "$run/checkpoints/last.pt" ]; then
    echo "== $run: resuming"; "$VQ" train "$1" --resume "$run" && touch "$run/DONE"
  else
    echo "== $run"; "$VQ" train "$@" --out "$run" && touch "$run/DONE"
  fi
}

# 1. fashion: VQGAN on the Fashion-MNIST train split, tokens, class-conditional transformer with a NULL class.
stage "$W/fashion_vqgan" vqgan --config $C/fashion_vqgan.yaml --data fashion-mnist
[ -f "$W/fashion_tokens/meta.json" ] || "$VQ" encode --model "$W/fashion_vqgan" --data fashion-mnist --size 28 --out "$W/fashion_tokens"
stage "$W/fashion_gpt" transformer --config $C/fashion_transformer.yaml --data "$W/fashion_tokens" --first-stage "$W/fashion_vqgan"

# 2. landscapes: VQGAN on the photos, segmentation stage on the S-FLCKR maps, 256 random crops per photo at
#    several scales, segmentation-conditioned transformer.
stage "$W/landscape_vqgan" vqgan --config $C/landscape_vqgan.yaml --data "$W/lists/photos_train.txt" --val-data "$W/lists/photos_val.txt"
stage "$W/landscape_seg" condition --config $C/landscape_seg.yaml --data "$W/lists/seg_train.txt"
[ -f "$W/landscape_tokens/meta.json" ] || "$VQ" encode --model "$W/landscape_vqgan" --cond-stage "$W/landscape_seg" \
    --cond segmentation --data "$W/landscape_photos" --cond-data "$D/sflckr_segmentations" \
    --size 64 --crops 256 --resize-max 192 --out "$W/landscape_tokens"
stage "$W/landscape_gpt" transformer --config $C/landscape_transformer.yaml --data "$W/landscape_tokens" \
    --first-stage "$W/landscape_vqgan" --cond-stage "$W/landscape_seg"

# 3. package: float16 model directories with their model cards under src/vqforge/bundled/
.venv/bin/python bench/package_bundled.py --work "$W"
