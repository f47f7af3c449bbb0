"""chest_xray: the Kaggle chest-xray-pneumonia data set (manual download)."""

from xdn.data.chest_xray.chest_xray_dataset_builder import Builder
from xdn.data.chest_xray.chest_xray_dataset_builder import ChestXrayConfig
