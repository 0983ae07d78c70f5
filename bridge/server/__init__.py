"""The gRPC bridge server: servicer, job manager, config and wiring."""
