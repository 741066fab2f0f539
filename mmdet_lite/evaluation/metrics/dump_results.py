"""``tools/test.py --out``: predictions written atomically, and before the metrics run."""
import os
import os.path as osp
import tempfile
from typing import Any

from mmengine.evaluator import DumpResults
from mmengine.fileio import dump
from mmengine.logging import print_log

from mmdet_lite.registry import METRICS


def atomic_dump(obj: Any, path: str, file_format: str = 'pkl') -> None:
    """Write ``obj`` to ``path`` through a temporary file in the same folder + ``os.replace``.

    A crash while writing leaves ``path`` as it was (an earlier file stays intact, no
    half-written file appears); only the temporary ``.<name>.*.tmp`` may be left behind.
    The new file gets the mode of the file it replaces, else the umask default.
    """
    path = osp.abspath(path)
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    if osp.exists(path):
        mode = os.stat(path).st_mode & 0o777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp_path = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp',
                                    dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            dump(obj, f, file_format=file_format)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


@METRICS.register_module()
class AtomicDumpResults(DumpResults):
    """mmengine's ``DumpResults`` (predictions moved to the CPU, pickled as one list in
    dataset order), written with :func:`atomic_dump`.

    ``tools/test.py --out`` puts it first in the evaluator: mmengine's ``Evaluator`` runs its
    metrics in list order, so the predictions are on disk before a later metric can fail.

    Args:
        out_file_path (str): A ``.pkl`` / ``.pickle`` file.
        collect_device (str): 'cpu' or 'gpu', for gathering results across ranks.
        collect_dir (str, optional): Folder for gathering on the CPU.
    """

    written = False  # set once the file is on disk

    def compute_metrics(self, results: list) -> dict:
        atomic_dump(results, self.out_file_path)
        self.written = True
        print_log(f'Results has been saved to {self.out_file_path}.', logger='current')
        return {}
