"""xdn on Apache Beam: `XdnModelHandler` for RunInference, and `xdn-beam`.

  pip install -e ".[beam]"
  xdn-beam --input='archive/**/*.dcm' --output=denoised/   # or python -m xdn.beam

`xdn.beam.handler` (the model handler) and `xdn.beam.pipeline` (the
command line) import apache_beam; this package itself imports nothing, so
the core install never needs Beam. See docs/beam.md.
"""
