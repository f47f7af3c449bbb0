"""Evaluation tasks: the PSNR table, inserted lesions (`lesions`), the
fidelity report (`fidelity`), strength calibration (`calibration`) and the
classical baselines (`baselines`)."""
