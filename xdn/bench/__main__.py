"""`python -m xdn.bench`: the same as `xdn-bench` (xdn.cli.bench)."""

from xdn.cli import bench

if __name__ == '__main__':
  bench.run()
