#!/usr/bin/env bash
# Testing on a Slurm cluster: srun starts one task per GPU; each evaluates a shard of the test
# set and the metric gathers the results (test.py's slurm launcher reads the SLURM_* variables).
#
# Usage: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options ...]
#   e.g. GPUS=8 tools/slurm_test.sh dev frcnn configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py \
#            work_dirs/frcnn/epoch_12.pth --out results.pkl
# Environment (defaults): GPUS (8, total), GPUS_PER_NODE (8), CPUS_PER_TASK (5),
# SRUN_ARGS (extra srun options, empty), PYTHON (python).
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options ...]" >&2
    exit 2
fi
exec "$(dirname "$0")/_slurm_launch.sh" "$1" "$2" test.py "$3" "$4" "${@:5}"
