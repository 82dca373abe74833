"""Example code shipped with the package. `vfl demo` runs `vfl.examples.hospitals`; in the repository,
examples/hospitals/hospitals.py is a link to that module, beside the example's node configs, job specs and run.sh."""
