#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh: torchrun with GPUS processes on this node running
# a tools/ script with --launcher pytorch.
#
# Usage: tools/_dist_launch.sh GPUS SCRIPT [script arguments ...]
# Multi-node: run on every node with the same MASTER_ADDR/PORT/NNODES and that node's
# NODE_RANK. Environment (defaults): NNODES (1), NODE_RANK (0), PORT (29500),
# MASTER_ADDR (127.0.0.1), PYTHON (python).
set -euo pipefail

GPUS=$1
SCRIPT=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)

PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$TOOLS_DIR/$SCRIPT" "${@:3}" --launcher pytorch
