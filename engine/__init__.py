"""finetui's engine: everything that is not UI (docs/architecture.md).

The package itself imports nothing: ``import engine.events`` costs the events module, not the schema."""


def model_type(name: str) -> str | None:
    """The model's architecture (config.json ``model_type``) when its config can be read without downloading,
    else None.  The schema's one rule that reads a model (a profile's layers by architecture) calls it through the
    package, so that ``engine.schema`` imports no other engine module (tests/test_import_contracts.py)."""
    from engine import modelinfo

    try:
        cfg, _ = modelinfo.load_config(name)
    except (modelinfo.ModelInfoError, OSError, ValueError):
        return None
    return cfg.get("model_type")
