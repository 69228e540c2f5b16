"""The training worker (run under torchrun / the deepspeed launcher).

``python -m engine.train.worker --run-dir DIR`` reads ``DIR/config.toml``, builds the
model, tokenizer, dataset and the TRL trainer, and writes ``DIR/events.jsonl``.
:mod:`engine.train.command` builds the launch command line (no heavy imports); every
other module here is imported only inside the worker process.
"""
