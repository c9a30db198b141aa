"""clusterfix-tui: an interactive, safe repair session for Kubernetes cluster networking."""

__version__ = "0.1.0"
