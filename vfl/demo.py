"""`vfl demo`: the hospitals example (vfl/examples/hospitals.py, linked from examples/hospitals/hospitals.py)."""
from vfl.examples.hospitals import run_demo

__all__ = ["run_demo"]
