#!/usr/bin/env bash
# One call on a GPU machine, from the repository root: the ResNet measurements of the suite.
#   0. installs the carried wheels offline (the GPU machine has no network and no ffcv, DALI,
#      torchvision or mlperf-logging: copy their wheels into WHEELS_DIR first; DALI's is about
#      600 MB, so it travels in parts that are joined here, see ../shared/GPU.md);
#   1. writes a synthetic JPEG dataset (256 px) and its FFCV copy;
#   2. resnet.train_step at the full preset: eager fp32 reference vs channels_last + bf16
#      autocast vs torch.compile, accuracy first, into one harness record;
#   3. loaders.throughput: torchvision, FFCV and DALI on the same images and cores, at 224 and 32 px;
#   4. an end-to-end ResNet-50 run (DALI, bf16, channels_last) on the synthetic data to its
#      target, evaluating on the rules' cadence (every 4 epochs, offset 0), with its MLLOG checked
#      by the compliance checker and compared with MLPerf v4.0. The run is logged in the OPEN
#      division: 100 synthetic classes are not ImageNet (and the page cache is only dropped as root);
#      the reasons are printed before training and kept in the run record.
# Results land in OUT_DIR (default results/gpu_resnet). Loaders whose wheels are missing are
# reported and left out rather than failing the whole call.
# Usage: scripts/gpu_resnet.sh [OUT_DIR] [WHEELS_DIR]
set -euo pipefail
out=${1:-results/gpu_resnet}
wheels=${2:-wheels}
source scripts/source_tree.sh
export PYTHONUNBUFFERED=1
mkdir -p "$out"

if [ -d "$wheels" ]; then
  for first in "$wheels"/*.whl.part-aa; do  # wheels split with `split -b 60M X.whl X.whl.part-`
    [ -e "$first" ] && cat "${first%.part-aa}".part-* > "${first%.part-aa}"
  done
  python -m pip install --quiet --no-index --find-links "$wheels" "$wheels"/*.whl || echo "some carried wheels did not install"
fi
loaders=()
for kind in torchvision ffcv dali; do
  module=$kind; [ "$kind" = dali ] && module=nvidia.dali
  if python -c "import $module" 2>/dev/null; then loaders+=("--loader" "$kind"); else echo "loader $kind: not installed, left out"; fi
done

python -m menagerie.harness.cli data synth "$out/data" --classes 100 --train-per-class 120 --val-per-class 20 --size 256
if python -c "import ffcv" 2>/dev/null; then
  python -m menagerie.harness.cli data to-ffcv "$out/data/train" "$out/data/train.beton" --workers 16
  python -m menagerie.harness.cli data to-ffcv "$out/data/val" "$out/data/val.beton" --workers 16
fi

python -m menagerie.harness.cli run resnet --size full --dtype bf16 --dtype fp32 --out "$out/resnet_train_step.json" || true
if [ ${#loaders[@]} -gt 0 ]; then
  python -m menagerie.harness.cli data throughput "$out/data" "${loaders[@]}" --size 224 --size 32 --batch-size 256 \
    --workers 16 --batches 40 --out "$out"
fi
train_loader=dali; python -c "import nvidia.dali" 2>/dev/null || train_loader=torchvision
python -m menagerie.harness.cli train resnet --data "$out/data" --arch resnet50 --loader "$train_loader" --optimizer lars \
  --batch-size 256 --epochs 8 --warmup-epochs 1 --eval-every 4 --eval-offset 0 --target 0.759 --workers 16 \
  --mllog "$out/resnet50-$train_loader.mllog" --out "$out"
python -m menagerie.harness.cli mlperf "$out/resnet50-$train_loader.mllog" --out "$out/compliance" || true
