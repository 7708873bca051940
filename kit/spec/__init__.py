"""The spec language: YAML files -> validated Behaviour objects."""
