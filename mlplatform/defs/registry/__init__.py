"""The model registry: challenger, promotion gate, champion."""
