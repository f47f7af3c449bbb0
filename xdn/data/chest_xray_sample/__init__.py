"""chest_xray_sample: 800 NIH chest X-rays at 64x64, shipped inside xdn."""

from xdn.data.chest_xray_sample.chest_xray_sample_dataset_builder import Builder
