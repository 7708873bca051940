"""The kernel matrix: the same spec set run on several targets (the running kernel,
gVisor, Debian kernels booted under QEMU, userlands in containers), merged into one
report. Each target is a YAML file in targets/; each kind of target is a module here."""
