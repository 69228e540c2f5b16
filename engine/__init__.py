"""finetui's engine: everything that is not UI (docs/architecture.md)."""


def _model_type(name: str) -> str | None:
    """The model's architecture (config.json model_type) when its config can be read without downloading."""
    from engine import modelinfo

    try:
        cfg, _ = modelinfo.load_config(name)
    except (modelinfo.ModelInfoError, OSError, ValueError):
        return None
    return cfg.get("model_type")


def _plug_schema() -> None:
    # The schema imports nothing else of engine (tests/test_import_contracts.py); the one rule that reads a model's
    # config.json (a profile's layers by architecture) gets its reader here, where every import of engine passes.
    from engine.schema import rules

    rules.set_model_type_lookup(_model_type)


_plug_schema()
