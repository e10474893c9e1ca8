"""The embedded sandbox: Kubernetes API emulator, workloads, Prometheus, load."""
