"""A user's own models, outside the project: what tests/test_user_models.py points space
files at (``model: {class: tests.usermodels.models:SAGE}``)."""
