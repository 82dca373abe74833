"""bank-b's own bottom models. Its node config lists them under `models:`; its node process imports them.

run.sh puts this example's directory on bank-b's PYTHONPATH; in Kubernetes, install the package into an image built
FROM the vfl image, or copy it onto the data volume and set the chart's extraPythonPath (docs/deploy.md).
"""
