"""Evaluation: tasks that score denoisers on test images with synthetic
noise, looked up by name in `tasks.TASKS` (what `xdn-evaluate --task` runs).

  tasks        the registry: denoise, lesions, fidelity, calibrate
  psnr_table   the PSNR / SSIM table, its files and figure (task 'denoise')
  lesions      fidelity of faint inserted lesions (task 'lesions')
  fidelity     the task-based image-quality report (task 'fidelity')
  calibration  a model's strength levels (task 'calibrate')
  settings     the noise settings and the noisy images every method sees
  images       the clean test images: a folder's split or a data set's
  methods      the models under evaluation (labels, strengths, running them)
  baselines    the classical denoisers (BM3D: the optional xdn[baselines])
  cache        the slow baselines' outputs kept on disk
"""
