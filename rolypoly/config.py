"""Configuration: hydra-core composition of ``configs/`` with ``key=value`` overrides."""
from __future__ import annotations

import os
from pathlib import Path

from rolypoly.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def configs_dir() -> Path:
    """The folder holding ``config.yaml`` (``$ROLYPOLY_CONFIGS`` overrides it)."""
    env = os.environ.get("ROLYPOLY_CONFIGS")
    path = Path(env) if env else REPO_DIR / "configs"
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"no config.yaml in {path} (set ROLYPOLY_CONFIGS to the configs folder)")
    return path


def load_config(overrides: list[str] | tuple[str, ...] = ()):
    """Compose the root config with hydra-style overrides.

    Parameters
    ----------
    overrides : list of str
        Items such as ``"model=rolypoly_v2"`` or ``"train.max_steps=100"``.

    Returns
    -------
    omegaconf.DictConfig

    Examples
    --------
    >>> cfg = load_config(["train.max_steps=10"])
    >>> cfg.train.max_steps
    10
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
            return compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"bad override in {list(overrides)}: {first}") from None


def resolve_path(path: str | os.PathLike) -> Path:
    """A config path: absolute as is, relative to the current directory otherwise."""
    return Path(os.path.expanduser(str(path)))


def with_values(cfg, **dotted):
    """A copy of ``cfg`` with dotted keys set (``with_values(cfg, **{"engine.enable": False})``).

    Examples
    --------
    >>> cfg = with_values(load_config([]), **{"train.max_steps": 7})
    >>> cfg.train.max_steps
    7
    """
    import copy

    from omegaconf import OmegaConf
    new = copy.deepcopy(cfg)
    for key, value in dotted.items():
        OmegaConf.update(new, key, value, merge=False)
    return new
