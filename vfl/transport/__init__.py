"""Transport: gRPC services, mutual TLS, chunking and validation of everything that arrives."""
