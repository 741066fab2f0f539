"""Prepare a training checkpoint for release: keep the weights, name the file by its hash.

A Runner checkpoint carries, beside ``meta`` and ``state_dict``, what only resuming needs
(``optimizer``, ``param_schedulers``, ``message_hub``, ...). This tool keeps the
``--save-keys`` (default ``meta state_dict``), writes the result in PyTorch's legacy
(non-zip) format as mmdetection does, so older PyTorch versions read it too, and names it
``OUT_STEM-<first 8 hex digits of its sha256>.pth``: ``model.pth`` becomes
``model-1a2b3c4d.pth`` (a name not ending in ``.pth`` gets the suffix appended). Only the
final file is left behind.

The input is read with ``torch.load(weights_only=True)`` and mmdet_lite's allow-list
(:mod:`mmdet_lite.engine.checkpoint`); ``--trust-checkpoint FILE`` allows full unpickling
(which can run code) of a file you trust that needs more.
"""
import argparse
import hashlib
import os
import os.path as osp
import sys
from typing import Sequence

from mmdet_lite.apis.cli import exit_on_user_error

DEFAULT_SAVE_KEYS = ('meta', 'state_dict')
EXAMPLE = """example:
  python tools/model_converters/publish_model.py \\
      work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth faster-rcnn_r18_fpn_shapes.pth
  # -> faster-rcnn_r18_fpn_shapes-<sha256[:8]>.pth with only meta and state_dict
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Process a checkpoint to be published', epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('in_file', help='input checkpoint filename')
    parser.add_argument('out_file', help='output checkpoint filename (the hash is added)')
    parser.add_argument('--save-keys', nargs='+', type=str, default=list(DEFAULT_SAVE_KEYS),
                        help='keys to save in the published checkpoint')
    parser.add_argument('--trust-checkpoint', action='append', default=[], metavar='FILE',
                        help='allow full unpickling (can run code) of this checkpoint file, '
                        'one you trust that holds objects beyond the weights-only allow-list')
    return parser.parse_args(argv)


def sha256_of_file(path: str, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints can be GBs)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def published_name(out_file: str, sha256: str) -> str:
    """``out_file`` without its ``.pth`` suffix, plus ``-<8 hex digits>.pth``."""
    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    return f'{stem}-{sha256[:8]}.pth'


def process_checkpoint(in_file: str, out_file: str,
                       save_keys: Sequence[str] = DEFAULT_SAVE_KEYS) -> str:
    """Write ``in_file`` reduced to ``save_keys`` and named by its hash.

    Args:
        in_file (str): A checkpoint (a dict, e.g. saved by the Runner).
        out_file (str): Output name before the hash, e.g. ``model.pth``.
        save_keys (Sequence[str]): Top-level keys to keep. Defaults to
            ``('meta', 'state_dict')``.

    Returns:
        str: The published file, ``<out_file stem>-<sha256[:8]>.pth``.

    Raises:
        FileNotFoundError: ``in_file`` does not exist.
        ValueError: ``in_file`` is no checkpoint dict, holds none of ``save_keys``, or
            holds objects outside the allow-list (see the module docstring).
    """
    import torch
    from mmengine.logging import print_log

    from mmdet_lite.engine.checkpoint import load_local_checkpoint

    if not osp.isfile(in_file):
        raise FileNotFoundError(f'in_file: checkpoint not found: {in_file}')
    checkpoint = load_local_checkpoint(in_file, map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise ValueError(f'{in_file} holds a {type(checkpoint).__name__}, expected a '
                         'checkpoint dict with keys such as meta and state_dict')
    kept = [key for key in checkpoint if key in save_keys]
    if not kept:
        # mmdetection would publish an empty dict here; that file is of no use to anyone
        raise ValueError(f'{in_file} has none of the --save-keys ({", ".join(save_keys)}); '
                         f'its keys are: {", ".join(map(str, list(checkpoint)[:20]))}')
    for key in list(checkpoint):
        if key not in save_keys:
            print_log(f'Key `{key}` will be removed because it is not in save_keys. If you '
                      'want to keep it, please set --save-keys.', logger='current')
            del checkpoint[key]

    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    # written under a temporary name and renamed once hashed: no half-written file is ever
    # under the published name, and out_file == in_file leaves the input untouched
    # (not tempfile.mkstemp: its files are private, 0600, and the rename would keep that)
    tmp_file = osp.join(out_dir, f'.{osp.basename(out_file)}.{os.getpid()}.publishing')
    try:
        torch.save(checkpoint, tmp_file, _use_new_zipfile_serialization=False)
        final_file = published_name(out_file, sha256_of_file(tmp_file))
        os.replace(tmp_file, final_file)
    except BaseException:
        if osp.exists(tmp_file):
            os.remove(tmp_file)
        raise
    print_log(f'The published model is saved at {final_file}.', logger='current')
    return final_file


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    from mmdet_lite.engine.checkpoint import (UntrustedCheckpointError,
                                              allow_unsafe_checkpoint, load_local_checkpoint)
    with allow_unsafe_checkpoint(*args.trust_checkpoint):
        final_file = process_checkpoint(args.in_file, args.out_file, args.save_keys)
    if args.trust_checkpoint:
        try:  # a trusted input may pass objects on that the weights-only loader refuses
            load_local_checkpoint(final_file, map_location='cpu')
        except UntrustedCheckpointError as err:
            print(f'warning: {final_file} keeps objects outside the weights-only allow-list; '
                  f'its users will need --trust-checkpoint ({err})', file=sys.stderr)


if __name__ == '__main__':
    main()
