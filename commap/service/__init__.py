"""The request facade shared by the CLI and the gRPC server: plan requests and drive sessions."""
