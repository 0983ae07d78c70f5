"""The bridge's configuration: one frozen object, built in ``cli.py`` (or a
test) from flags, environment and an optional TOML file."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ..energy.accounting import Site
from ..energy.sites import site_from_config
from ..errors import InvalidArgumentError
from ..shot.validation import ShotLimits

MIB = 1024 * 1024
METERS = ("auto", "nvml", "rapl", "estimate")


@dataclass(frozen=True)
class Limits:
    max_frames: int = 480
    max_width: int = 2048
    max_height: int = 2048
    max_upload_bytes: int = 1024 * MIB
    max_active_jobs_per_project: int = 16
    max_chunk_bytes: int = 4 * MIB
    max_steps: int = 200
    max_prompt_chars: int = 4000
    max_output_width: int = 2048
    max_output_height: int = 2048
    # open SubmitShot / WatchJob streams; a client is its token, or its peer host without tokens
    max_streams_per_client: int = 256
    max_streams_per_project: int = 512
    upload_idle_timeout_s: float = 30.0   # an upload silent this long is aborted and its temp file removed
    min_free_disk_bytes: int = 512 * MIB  # uploads refused while the data folder has less free space

    @property
    def shot_limits(self) -> ShotLimits:
        return ShotLimits(self.max_frames, self.max_width, self.max_height)


@dataclass(frozen=True)
class ProjectSettings:
    """Per-project governance (docs/governance.md), from a ``[projects.<name>]``
    table; ``[projects."*"]`` is the default for every other project."""

    # refuse jobs whose model profile has a component not cleared for commercial use
    commercial: bool = True
    # uploaded shots and generated frames encrypted on disk with the project's key
    encrypt: bool = False


@dataclass(frozen=True)
class BridgeConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 50151          # 0 = let the OS choose
    limits: Limits = field(default_factory=Limits)
    # SHA-256 hex digest of a token -> project it may see; project "*" sees
    # every project. Tokens are never kept in the clear (see server/auth.py);
    # they come from ``tokens_file`` or GREENLIGHT_TOKENS. No tokens means no
    # authentication: loopback only, unless ``insecure_no_auth``.
    tokens: dict[str, str] = field(default_factory=dict)
    tokens_file: Path | None = None
    insecure_no_auth: bool = False     # serve off loopback without tokens (explicit opt-in)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # mutual TLS: clients must present a certificate signed by this CA
    reflection: bool = False           # gRPC server reflection (opt-in); health is always on
    audit_log: bool = True             # append-only JSON lines in data_dir/audit.jsonl
    # project -> days ended jobs are kept ("*" = every other project); absent = kept until deleted
    retention_days: dict[str, float] = field(default_factory=dict)
    retention_sweep_s: float = 3600.0  # how often the bridge applies retention_days
    # a resumable job yields between frames, after this many seconds, to another
    # project's waiting interactive job (None = never)
    time_slice_s: float | None = 30.0
    # project -> its governance settings ("*" = every other project); absent = ProjectSettings()
    projects: dict[str, ProjectSettings] = field(default_factory=dict)
    # encryption keys (a private file outside the data folder, mode 0600; see
    # bridge/governance/encryption.py); GREENLIGHT_KEYS adds keys from the environment
    key_file: Path | None = None
    metrics_port: int | None = None    # Prometheus text endpoint; None = off, 0 = any free port
    metrics_host: str = "127.0.0.1"
    site: Site = field(default_factory=Site)
    max_workers: int = 16              # threads for blocking work (store, files); streams hold none
    watts_per_busy_cpu: float | None = None   # None = the meter's default
    # Energy meter: "auto" (NVML for the GPUs this bridge's jobs run on, then
    # RAPL, then the CPU-time estimate), or "nvml", "rapl", "estimate" to insist.
    meter: str = "auto"
    # NVML device indices the jobs use; empty = from GREENLIGHT_DEVICE and
    # CUDA_VISIBLE_DEVICES (see bridge.energy.meters.job_gpu_indices).
    meter_gpus: tuple[int, ...] = ()
    # Extra backends to load, as "module:Class" (a no-argument constructor).
    extra_backends: tuple[str, ...] = ()
    # Carbon signal providers for batch planning, tried in order (see
    # build_signal): "static", "csv:PATH[#COLUMN]", "history:SPEC", "uk", "electricitymaps",
    # "watttime", "carbon-aware-sdk:URL". The static table always ends the chain.
    carbon_signals: tuple[str, ...] = ("static",)
    replan_every_s: float = 1800.0
    executor: str = "local"            # "local" | "ray"
    ray_address: str | None = None     # None: ray.init() local / RAY_ADDRESS
    devices: int = 1                   # devices (GPUs) at the first site, for the ray executor
    # More sites to plan batch jobs across, as (site, devices there); needs the
    # ray executor, where each site is a Ray custom resource "site:<name>".
    remote_sites: tuple[tuple[Site, int], ...] = ()

    def project(self, name: str) -> ProjectSettings:
        """A project's governance settings: its own table, else ``"*"``'s, else the defaults."""
        return self.projects.get(name) or self.projects.get("*") or ProjectSettings()

    @property
    def sites(self) -> list[tuple[Site, int]]:
        """(site, devices) in order of preference; the first runs interactive jobs."""
        return [(self.site, self.devices if self.executor == "ray" else 1), *self.remote_sites]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None, **overrides) -> BridgeConfig:
    """Build a config from a TOML file (optional) and keyword overrides.

    TOML layout: top-level keys of BridgeConfig, tables ``[limits]`` and
    ``[site]``. ``[site]`` may say ``use = "aws-eu-central-1"`` (a shipped
    site, or one from the optional top-level ``sites_file``) and override its
    fields; see docs/energy.md.

    Tokens never sit in this file: they come, hashed, from ``tokens_file``
    (a private TOML file of ``"<sha256 hex>" = "project"`` entries, written by
    ``greenlight token new``) and, in the clear, from the environment variable
    GREENLIGHT_TOKENS (``project=token,project=token``; hashed here). Both
    are merged with digests given as the ``tokens`` override. See
    docs/security.md. ``environ`` is for tests (default ``os.environ``).
    """
    data: dict = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArgumentError(f"config {path}: {exc}") from exc
    limits = _build(Limits, data.pop("limits", {}), "limits")
    projects = _projects(data.pop("projects", {}))
    sites_file = data.pop("sites_file", None)
    site_table = dict(data.pop("site", {}))
    if "devices" in site_table:
        data["devices"] = site_table.pop("devices")
    site = site_from_config(site_table, sites_file)
    remote = []
    for i, entry in enumerate(data.pop("remote_sites", [])):
        entry = dict(entry)
        devices = entry.pop("devices", 1)
        if not (isinstance(devices, int) and devices >= 1):
            raise InvalidArgumentError(f"config [[remote_sites]] #{i + 1}: devices must be a whole number >= 1")
        remote.append((site_from_config(entry, sites_file), devices))
    data["remote_sites"] = tuple(remote)
    if "tokens" in data:
        raise InvalidArgumentError(
            f"config {path}: a [tokens] table is no longer read (tokens in a config file sit in the clear); "
            "move them to a private tokens file named by tokens_file = \"...\" (create it with "
            "`greenlight token new --project P --tokens-file FILE`), or set GREENLIGHT_TOKENS", field="tokens")
    known = {f.name for f in fields(BridgeConfig)}
    unknown = set(data) - known
    if unknown:
        raise InvalidArgumentError(f"config {path}: unknown keys {sorted(unknown)}; valid: {sorted(known)}")
    data.setdefault("data_dir", overrides.pop("data_dir", Path("greenlight-data")))
    config = BridgeConfig(**{**data, "data_dir": Path(data["data_dir"])}, limits=limits, site=site, projects=projects)
    config = replace(config, extra_backends=tuple(config.extra_backends),
                     carbon_signals=tuple(config.carbon_signals))
    config = replace(config, meter_gpus=tuple(int(i) for i in config.meter_gpus))
    if config.meter not in METERS:
        raise InvalidArgumentError(f"config {path}: meter must be one of {METERS}, got {config.meter!r}")
    if config.executor not in ("local", "ray"):
        raise InvalidArgumentError(f"config {path}: executor must be 'local' or 'ray', got {config.executor!r}")
    names = [s.name for s, _ in config.sites]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"config {path}: site names must be unique, got {names}")
    if config.remote_sites and config.executor != "ray":
        raise InvalidArgumentError(f"config {path}: [[remote_sites]] need executor = \"ray\" "
                                   "(the local executor runs on this machine only)")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config = replace(config, **overrides)
    for key in ("tls_cert", "tls_key", "tls_client_ca", "tokens_file", "key_file"):
        if getattr(config, key) is not None:
            config = replace(config, **{key: Path(getattr(config, key))})
    for key in ("insecure_no_auth", "reflection", "audit_log"):
        if not isinstance(getattr(config, key), bool):
            raise InvalidArgumentError(f"config {path}: {key} must be true or false", field=key)
    return replace(config, tokens=_tokens(config, os.environ if environ is None else environ))


def _tokens(config: BridgeConfig, environ: Mapping[str, str]) -> dict[str, str]:
    from .auth import TOKENS_ENV, is_digest, load_tokens_file, merge_tokens, tokens_from_env

    given = {str(k).lower(): str(v) for k, v in config.tokens.items()}
    if not all(is_digest(k) for k in given):
        raise InvalidArgumentError("tokens are kept as SHA-256 hex digests (see bridge.server.auth.hash_token)",
                                   field="tokens")
    from_file = load_tokens_file(config.tokens_file) if config.tokens_file is not None else {}
    return merge_tokens(given, from_file, tokens_from_env(environ.get(TOKENS_ENV, "")))


def _projects(tables) -> dict[str, ProjectSettings]:
    """``[projects.<name>]`` tables: ``commercial`` and ``encrypt``, each true or false."""
    if not isinstance(tables, dict):
        raise InvalidArgumentError("config [projects]: give one table per project, e.g. [projects.alpha]",
                                   field="projects")
    out = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise InvalidArgumentError(f"config [projects.{name}]: must be a table (commercial, encrypt)",
                                       field=f"projects.{name}")
        built = _build(ProjectSettings, dict(table), f"projects.{name}")
        for f in fields(ProjectSettings):
            if not isinstance(getattr(built, f.name), bool):
                raise InvalidArgumentError(f"config [projects.{name}] {f.name}: must be true or false",
                                           field=f"projects.{name}.{f.name}")
        out[str(name)] = built
    return out


def _build(cls, values: dict, section: str):
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise InvalidArgumentError(f"config [{section}]: unknown keys {sorted(unknown)}; valid: {sorted(known)}")
    built = cls(**values)
    if cls is Limits:
        _validate_limits(built)
    return built


def _validate_limits(limits: Limits) -> Limits:
    """Every ``[limits]`` value a finite number of its field's kind, > 0
    (``min_free_disk_bytes`` may be 0: no guard); the field named otherwise."""
    for f in fields(Limits):
        value = getattr(limits, f.name)
        whole = f.type in (int, "int")
        kind = "a whole number" if whole else "a number"
        least = 0 if f.name == "min_free_disk_bytes" else None
        ok = (isinstance(value, int) if whole else isinstance(value, (int, float))) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (value >= least if least is not None else value > 0)
        if not ok:
            bound = f">= {least}" if least is not None else "> 0"
            raise InvalidArgumentError(f"config [limits] {f.name}: must be {kind} {bound}, got {value!r}",
                                       field=f"limits.{f.name}")
    return limits


def build_signal(specs: tuple[str, ...]):
    """The carbon signal chain from config entries; credentials come from the
    environment (ELECTRICITYMAPS_TOKEN, WATTTIME_USERNAME / WATTTIME_PASSWORD)
    so they never sit in a config file. The static table always closes the
    chain: a provider outage never blocks a job."""
    from ..energy import signals

    try:
        providers: list[signals.CarbonSignal] = [p for p in (_provider(spec) for spec in specs) if p is not None]
        providers.append(signals.StaticTable())
    except signals.SignalError as exc:
        raise InvalidArgumentError(f"carbon_signals: {exc}") from exc
    return signals.FallbackChain(providers)


def _provider(spec: str):
    import os

    from ..energy import signals

    kind, _, arg = spec.partition(":")
    if kind == "static":
        return None
    if kind == "history":  # history:SPEC: forecasts predicted from SPEC's realised history (never its future)
        from ..scheduling.history_forecast import HistoryForecastSignal

        inner = _provider(arg) if arg else None
        if inner is None:
            raise InvalidArgumentError("carbon_signals: use 'history:SPEC', e.g. 'history:csv:trace.csv' "
                                       "(the static table has no history to learn from)")
        return HistoryForecastSignal(inner)
    if kind == "csv":      # csv:PATH or csv:PATH#COLUMN (a header name, "direct" or "lca")
        path, _, column = arg.partition("#")
        if not path:
            raise InvalidArgumentError("carbon_signals: use 'csv:PATH' or 'csv:PATH#COLUMN'")
        return signals.CsvTrace(path, column=column or None)
    if kind == "uk":
        return signals.UkCarbonIntensity()
    if kind == "electricitymaps":
        token = os.environ.get("ELECTRICITYMAPS_TOKEN")
        if not token:
            raise InvalidArgumentError(
                "carbon_signals: 'electricitymaps' needs ELECTRICITYMAPS_TOKEN in the environment")
        return signals.ElectricityMaps(token)
    if kind == "watttime":
        user, password = os.environ.get("WATTTIME_USERNAME"), os.environ.get("WATTTIME_PASSWORD")
        if not (user and password):
            raise InvalidArgumentError("carbon_signals: 'watttime' needs WATTTIME_USERNAME and WATTTIME_PASSWORD")
        return signals.WattTime(user, password)
    if kind == "carbon-aware-sdk":
        if not arg:
            raise InvalidArgumentError("carbon_signals: use 'carbon-aware-sdk:http://host:port'")
        return signals.CarbonAwareSdk(arg)
    raise InvalidArgumentError(f"carbon_signals: unknown provider {spec!r}; use static, csv:PATH[#COLUMN], "
                               "history:SPEC, uk, "
                               "electricitymaps, watttime or carbon-aware-sdk:URL")


def keyring_for(config: BridgeConfig, environ: Mapping[str, str] | None = None):
    """The bridge's keyring (encryption at rest, docs/governance.md), or None
    when no project encrypts and no keys are configured."""
    from ..governance.encryption import KEYS_ENV, Keyring

    env = os.environ if environ is None else environ
    if config.key_file is None and not env.get(KEYS_ENV) and not any(p.encrypt for p in config.projects.values()):
        return None
    return Keyring(encrypts=lambda project: config.project(project).encrypt, key_file=config.key_file,
                   environ=env, data_dir=config.data_dir)
