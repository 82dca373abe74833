"""The long-running party node: config, gRPC server, job runtime."""
