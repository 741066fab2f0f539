#!/usr/bin/env bash
# Training on a Slurm cluster: srun starts one task per GPU and train.py's slurm launcher
# sets up torch.distributed from the SLURM_* variables.
#
# Usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options ...]
#   e.g. GPUS=16 tools/slurm_train.sh dev frcnn configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py \
#            work_dirs/frcnn
# Environment (defaults): GPUS (8, total), GPUS_PER_NODE (8), CPUS_PER_TASK (5),
# SRUN_ARGS (extra srun options, empty), PYTHON (python).
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options ...]" >&2
    exit 2
fi
exec "$(dirname "$0")/_slurm_launch.sh" "$1" "$2" train.py "$3" --work-dir="$4" "${@:5}"
