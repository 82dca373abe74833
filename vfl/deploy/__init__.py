"""Deployment helpers: `vfl doctor` diagnostics and `vfl submit --kube` (Kubernetes Jobs)."""
