"""Containers: OCI bundles and config.json, namespaces, rootfs and mounts, cgroups, the state
store, stdio/console/logs and the per-container monitor. Uses engine/ for checkpoint/restore;
engine/ never imports this package."""
