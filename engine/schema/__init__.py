"""The schema of a finetui job: the one package every view renders from.

- ``kinds.py``: one class per kind of field (coercion, formatting, allowed values in words, widget, CLI type);
- ``fields.py``: the field declarations (group, kind, default, range or choices, label, help, visibility),
  and the constants other parts read;
- ``profiles.py``: the provider profiles, overlays on the declarations;
- ``job.py``: :class:`JobConfig` (a profile plus the values set), resolution, coercion and value checks;
- ``rules.py``: the cross-field rules;
- ``problems.py``: :class:`Problem` and :class:`ConfigError`.

It imports nothing of engine but the error type and two leaf helpers (``engine.datapaths``,
``engine.redact``); ``tests/test_import_contracts.py`` checks it.
"""

from engine.schema.fields import (ALL_LINEAR_LLAMA, DATA_CHECK_FIELDS, DEFAULT_TARGET_MODULES, FIELD_BY_NAME, FIELDS,
                                  FORMATS, FORMATS_BY_STAGE, FPT, GROUP_FIELDS, GROUP_TITLES, GROUPS, HOST_FORM, LF,
                                  LOCAL_HOST, LORA_METHODS, MASTER_PORT, MAX_ROWS, MAX_TOKENS, METHODS, NOVA, OCI,
                                  REMOTE_PYTHON, REMOTE_WORKDIR, RUNS_DIR, SAMPLES_PREFIX, SECRET_KEYS, STAGES,
                                  TINY_MODEL, TINY_MODELS, TINY_VLM, TOOLS, WX, Field, Range, env_name_problem, host_problem, is_local_host,
                                  is_remote_job, key_of, names_in)
from engine.schema.kinds import INT_LIMIT, KINDS, Kind, _fmt, _num, paths_problem
from engine.schema.job import JobConfig, Spec, check_value, coerce, spec
from engine.schema.problems import ConfigError, Problem, suggest
from engine.schema.profiles import PROFILES, ModelDefaults, Override, Profile
from engine.schema.rules import (accumulation_for, cross_field_problems, packs, slurm_problems,
                                 total_ranks)

__all__ = [
    "ALL_LINEAR_LLAMA", "DATA_CHECK_FIELDS", "DEFAULT_TARGET_MODULES", "FIELD_BY_NAME", "FIELDS", "FORMATS",
    "FORMATS_BY_STAGE", "FPT", "GROUP_FIELDS", "GROUP_TITLES", "GROUPS", "HOST_FORM", "LF", "LOCAL_HOST",
    "LORA_METHODS", "MASTER_PORT", "MAX_ROWS", "MAX_TOKENS", "METHODS", "NOVA", "OCI", "REMOTE_PYTHON",
    "REMOTE_WORKDIR", "RUNS_DIR", "SAMPLES_PREFIX", "SECRET_KEYS", "STAGES", "TINY_MODEL", "TINY_MODELS", "TINY_VLM", "TOOLS", "WX", "Field",
    "Range", "env_name_problem", "host_problem", "is_local_host", "is_remote_job", "key_of", "names_in", "INT_LIMIT",
    "KINDS", "Kind", "_fmt", "_num", "paths_problem", "JobConfig", "Spec", "check_value", "coerce", "spec",
    "ConfigError", "Problem", "suggest", "PROFILES", "ModelDefaults", "Override", "Profile", "accumulation_for",
    "cross_field_problems", "packs", "slurm_problems", "total_ranks"
]
