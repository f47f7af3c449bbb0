"""`python -m xdn.beam`: the same as `xdn-beam` (xdn.beam.pipeline)."""

from xdn.beam import pipeline

if __name__ == '__main__':
  pipeline.run()
