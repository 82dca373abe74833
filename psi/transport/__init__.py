"""gRPC transport for PSI: the ``psi.v1.Psi`` service (mountable on any ``grpc.Server``) and the client."""
from psi.transport.client import run_session
from psi.transport.server import PeerInfo, PsiServicer, add_psi_service

__all__ = ["PeerInfo", "PsiServicer", "add_psi_service", "run_session"]
