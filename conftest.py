"""Running `pytest` at the repository root collects specs/ through the kit's plugin."""

pytest_plugins = ["kit.plugin"]
