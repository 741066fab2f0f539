"""Type aliases shared by configs, heads and detectors."""
from typing import List, Optional, Sequence, Union

from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

# A config is a plain dict or an mmengine ConfigDict.
ConfigType = Union[ConfigDict, dict]
OptConfigType = Optional[ConfigType]
# One config or a list of them (e.g. init_cfg).
MultiConfig = Union[ConfigType, List[ConfigType]]
OptMultiConfig = Optional[MultiConfig]

# Per-image instance lists: one InstanceData per image of the batch.
InstanceList = List[InstanceData]
OptInstanceList = Optional[InstanceList]

RangeType = Sequence[int]
