"""Code that more than one authgate process needs: configuration, errors, storage, tokens, gRPC."""
