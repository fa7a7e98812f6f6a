"""Pages of the documentation site generated from the code at ``mkdocs build`` time.

``docs/hooks.py`` adds them to the site, so the configuration reference and the task
catalog are rebuilt from the pydantic models and the YAML catalog on every build and
cannot drift from them. Nothing here is needed to run experiments.
"""
