"""xdn's data: TFDS builders for chest radiographs and the input pipeline.

Importing this package registers the TFDS data sets `chest_xray` (Kaggle,
manual download) and `chest_xray_sample` (800 NIH images shipped inside the
package), so any project can `import xdn.data` and then
`tfds.load('chest_xray_sample')`. The input pipeline is `xdn.data.pipeline`.
"""

from xdn.data import chest_xray  # Registers 'chest_xray'.
from xdn.data import chest_xray_sample  # Registers 'chest_xray_sample'.
