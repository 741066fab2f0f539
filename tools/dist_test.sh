#!/usr/bin/env bash
# Distributed testing with torchrun, one process per GPU; each process evaluates a shard of
# the test set and the metric gathers the results.
#
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options ...]
#   e.g. tools/dist_test.sh configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py ckpt.pth 8 \
#            --out results.pkl
# Environment (defaults): NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1),
# PYTHON (python).
set -euo pipefail

if [ "$#" -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py options ...]" >&2
    exit 2
fi
exec "$(dirname "$0")/_dist_launch.sh" "$3" test.py "$1" "$2" "${@:4}"
