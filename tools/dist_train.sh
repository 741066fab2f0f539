#!/usr/bin/env bash
# Distributed training on one or more nodes with torchrun, one process per GPU.
#
# Usage: tools/dist_train.sh CONFIG GPUS [train.py options ...]
#   e.g. tools/dist_train.sh configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py 8 --amp
# Multi-node: run it on every node with the same MASTER_ADDR/PORT/NNODES and that node's
# NODE_RANK. Environment (defaults): NNODES (1), NODE_RANK (0), PORT (29500),
# MASTER_ADDR (127.0.0.1), PYTHON (python).
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py options ...]" >&2
    exit 2
fi
exec "$(dirname "$0")/_dist_launch.sh" "$2" train.py "$1" "${@:3}"
