"""The software switch: wire protocol, dataplane pipeline, control plane, UDP daemon."""
