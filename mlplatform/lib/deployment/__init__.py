"""Where a champion goes to serve, described without Dagster or a cluster: its Kubernetes manifests."""
