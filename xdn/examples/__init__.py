"""A small radiograph with real detector noise, shipped for a first run.

  xdn-denoise --example --out=denoised

`chest_pa_nema_rg1.png`: a 512x512 crop (rows 600-1111, columns 300-811)
of `RG1_UNCR.dcm`, a processed Philips chest PA (15-bit, MONOCHROME1,
inverted so bone is bright) from the NEMA WG04 test set as distributed in
PyPI's `pydicom-data` (MIT licence; see README.md beside this file),
stored as a 16-bit PNG. Its noise is the detector's own: pixel std about
1.5 on the 0-255 scale, neighbour correlation about 0.5.
"""

import os

FOLDER = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(FOLDER, 'chest_pa_nema_rg1.png')
