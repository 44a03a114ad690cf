"""Classifiers: the contract (:mod:`.base`), the registry (:mod:`.registry`) and the built-ins."""
