"""Install mmdet_lite: pure Python, nothing compiled."""
import os.path as osp

from setuptools import find_packages, setup


def read_requirements(path: str) -> list:
    """Return the requirement lines of a requirements file, without comments."""
    with open(osp.join(osp.dirname(__file__), path)) as f:
        lines = [line.split('#')[0].strip() for line in f]
    return [line for line in lines if line]


def runtime_requirements() -> list:
    """Runtime requirements; a full mmcv install already present replaces mmcv-lite.

    Both distributions install the same ``mmcv`` package, so installing mmcv-lite over a
    full mmcv (with compiled ops) would overwrite it.
    """
    requirements = read_requirements('requirements/runtime.txt')
    try:
        from importlib.metadata import PackageNotFoundError, version
        version('mmcv')
    except PackageNotFoundError:
        return requirements
    return [r for r in requirements if not r.startswith('mmcv-lite')]


def read_version() -> str:
    namespace: dict = {}
    with open(osp.join(osp.dirname(__file__), 'mmdet_lite', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='mmdet_lite',
    version=read_version(),
    description='A slim, pure-Python object detection toolbox in the style of mmdetection 3.x',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
    python_requires='>=3.9',
    install_requires=runtime_requirements(),
    extras_require={
        'optional': read_requirements('requirements/optional.txt'),
        # The tests exercise the optional backends too.
        'tests': (read_requirements('requirements/tests.txt') +
                  read_requirements('requirements/optional.txt')),
    },
    license='Apache-2.0',
    zip_safe=False,
)
