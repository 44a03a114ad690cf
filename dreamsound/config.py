"""Every knob of a dream, declared once: :class:`DreamConfig`.

A knob is a dataclass field whose metadata says how users meet it: its command-line flag, a
one-line help, a help panel, and numeric bounds. The CLI builds its options from these fields
(:mod:`dreamsound.cli.options`), the one-shot :func:`dreamsound.dream` takes them as keyword
arguments, ``evaluate`` stores them in its journal (:meth:`DreamConfig.to_json`), and the studio
builds its controls from them: the name, default and meaning of a knob are written here only.

A config is validated when it is made (:meth:`DreamConfig.__post_init__`), so an object that
exists is a valid one; every problem is a :class:`~dreamsound.errors.ConfigError` of one line
that names the command-line flag.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dreamsound.errors import ConfigError, did_you_mean

#: Exact domains change one model's own input; sound domains change a sound every model hears.
EXACT_DOMAINS = ("spectrogram", "waveform")
SOUND_DOMAINS = ("envelope", "samples")
DOMAINS = EXACT_DOMAINS + SOUND_DOMAINS
RULES = ("additive", "filter", "filter-add", "target")
NORMALIZATIONS = ("mean", "max")
STYLES = ("robust", "exact")
SCORES = ("logit", "log-prob")

#: Default step size per domain: dB of the mel spectrogram (spectrogram domain, mean absolute
#: change per step), a fraction of the input's RMS (waveform and samples domains), or dB of the
#: envelope's gains (envelope domain).
DEFAULT_STEP_SIZE = {"spectrogram": 0.25, "waveform": 0.05, "envelope": 0.5, "samples": 0.02}

#: What each style fills in for the knobs left unset (None). ``exact`` is the engine as
#: DreamSound and Cochran & Kim used it: one model's own input, its logit, no changes; its
#: dreams convince that model and few others. ``robust`` (the default) changes the sound's
#: envelope, heard through two random changes per step, with saturating log-probabilities,
#: within 6 dB of the original: on 41 wrong-class dreams every judge outside the dream moved
#: more often than with ``exact``, at half its distance (the README's measurements).
STYLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "exact": {"domain": "spectrogram", "changes": 0, "score": "logit"},
    "robust": {"domain": "envelope", "changes": 2, "score": "log-prob", "max_rmse_db": 6.0},
}

#: The style of a sonification: it turns the gradient of the model's own input (an exact
#: domain) into sound, as DreamSound did (``dreamsound sonify``, :func:`dreamsound.sonify`,
#: the studio's Sonify tab).
SONIFY_STYLE = "exact"

#: Help panels of the command line, in display order.
PANELS = ("Dream", "Stop and distance", "Waveform rules", "Rendering and output")


def knob(default: Any, *, flag: str, help: str, panel: str, short: str | None = None,
         min: float | None = None, max: float | None = None,
         choices: tuple[str, ...] | None = None, cli: bool = True) -> Any:
    """A :class:`DreamConfig` field with what the CLI and the studio need to show it.

    Parameters
    ----------
    default
        The default value.
    flag : str
        Command-line flag (``--steps``).
    help : str
        One line for ``--help`` and the studio.
    panel : str
        One of :data:`PANELS`.
    short : str, optional
        Short flag (``-n``); each short flag means one thing across every command.
    min, max : float, optional
        Inclusive bounds, checked by the CLI parser and again by :meth:`DreamConfig.validate`.
    choices : tuple of str, optional
        The values a text knob accepts (checked by :meth:`DreamConfig.validate`; the studio
        offers them in a list).
    cli : bool
        False for knobs that only the library sets (a flag with the inverse meaning may exist).
    """
    return field(default=default, metadata={"flag": flag, "help": help, "panel": panel,
                                            "short": short, "min": min, "max": max,
                                            "choices": choices, "cli": cli})


@dataclass(frozen=True)
class DreamConfig:
    """How to dream: every knob, validated at construction.

    Attributes are described by their ``help`` metadata (``dreamsound dream -h`` prints them).
    Units: ``step_size`` in dB (spectrogram) or × input RMS (waveform); ``max_rmse_db`` in dB;
    ``jitter`` in seconds; confidences in [0, 1].
    """

    style: str | None = knob(None, flag="--style", choices=STYLES, panel="Dream",
                             help="robust: a sound other models hear too (envelope, two random "
                                  "changes, within 6 dB); exact: the model's own input, as "
                                  "DreamSound and Cochran & Kim. Fills in --domain, --changes, "
                                  "--score and --max-rmse-db when not given. Default: robust, "
                                  "or exact with --domain spectrogram or waveform.")
    domain: str | None = knob(None, flag="--domain", short="-d", choices=DOMAINS, panel="Dream",
                              help="spectrogram (ascend the log-mel, render with fast "
                                   "Griffin-Lim), waveform (the samples, DreamSound's rules), "
                                   "envelope (a smooth gain on the sound's own spectrum) or "
                                   "samples (the sound, heard by every model). Default: the "
                                   "style's.")
    steps: int = knob(50, flag="--steps", short="-n", min=0, panel="Dream",
                      help="Gradient steps (per octave).")
    step_size: float | None = knob(None, flag="--step-size", short="-s", panel="Dream",
                                   help="Per step: dB of mean change (spectrogram, default "
                                        "0.25) or a fraction of the input RMS (waveform, "
                                        "default 0.05).")
    normalize: str = knob("mean", flag="--normalize", choices=NORMALIZATIONS, panel="Dream",
                          help="Gradient normalisation: mean (g / mean|g|) or max (g / max|g|).")
    smooth: int = knob(1, flag="--smooth", min=0, panel="Dream",
                       help="Passes of a [1,2,1] blur of the log-mel gradient (spectrogram "
                            "domain; 0: raw).")
    octaves: int = knob(1, flag="--octaves", min=1, panel="Dream",
                        help="Coarse-to-fine time scales (spectrogram domain).")
    octave_scale: float = knob(1.4, flag="--octave-scale", panel="Dream",
                               help="Time scale between octaves.")
    jitter: float = knob(0.0, flag="--jitter", min=0.0, panel="Dream",
                         help="Random time roll per step, up to this many seconds.")
    changes: int | None = knob(None, flag="--changes", min=0, panel="Dream",
                               help="Randomly changed copies of the sound per step (shift, "
                                    "gain, speed, noise, EQ tilt, reverb, band limit) that the "
                                    "models must all hear; 0: none. Envelope and samples "
                                    "domains. Default: the style's.")
    score: str | None = knob(None, flag="--score", choices=SCORES, panel="Dream",
                             help="logit (ascend the target's logit) or log-prob (its "
                                  "log-probability, saturating once a model is convinced). "
                                  "Default: the style's.")
    seed: int = knob(0, flag="--seed", panel="Dream",
                     help="Fixes every random choice (same seed, same bytes).")
    until: float | None = knob(None, flag="--until", min=0.0, max=1.0,
                               panel="Stop and distance",
                               help="Stop once the target confidence reaches this.")
    until_rendered: bool = knob(False, flag="--until-rendered", panel="Stop and distance",
                                help="With --until: stop only once the rendered audio reaches "
                                     "it too (renders to check).")
    max_rmse_db: float | None = knob(None, flag="--max-rmse-db", panel="Stop and distance",
                                     help="Stay within this rmse (dB) of the original's log-mel. "
                                          "Default: 6 with --style robust, none with exact.")
    distance_weight: float = knob(0.0, flag="--distance-weight", min=0.0,
                                  panel="Stop and distance",
                                  help="Penalty weight on mse_db2 to the original.")
    rule: str = knob("additive", flag="--rule", short="-r", choices=RULES, panel="Waveform rules",
                     help="Waveform update: additive, filter, filter-add or target.")
    flip: bool = knob(False, flag="--flip", panel="Waveform rules",
                      help="Waveform filter rules: swap mask and signal (mask from the sound, "
                           "applied to the gradient).")
    mask_threshold: float = knob(0.1, flag="--mask-threshold", min=0.0, max=1.0,
                                 panel="Waveform rules",
                                 help="Waveform masks: keep bins at least this fraction of the "
                                      "maximum.")
    gl_iterations: int = knob(32, flag="--gl-iterations", min=0, panel="Rendering and output",
                              help="Fast Griffin-Lim iterations when rendering.")
    fit_iterations: int = knob(50, flag="--fit-iterations", min=0,
                               panel="Rendering and output",
                               help="Then steps fitting the audio's log-mel to the dream's "
                                    "(0: none).")
    limit: bool = knob(True, flag="--no-limit", panel="Rendering and output", cli=False,
                       help="Do not peak-limit the result to -1 dBFS.")
    snapshot_every: int | None = knob(None, flag="--save-every", min=1,
                                      panel="Rendering and output",
                                      help="Also write a numbered snapshot every K steps.")

    def __post_init__(self) -> None:
        if self.style is None:  # an exact domain asks for the exact engine
            object.__setattr__(self, "style", "exact" if self.domain in EXACT_DOMAINS
                               else "robust")
        _choice(self.style, STYLES, "--style")
        if self.style == "robust" and self.domain in EXACT_DOMAINS and self.changes is None:
            raise ConfigError(f"--style robust dreams a sound every model hears (--domain "
                              f"envelope or samples); the {self.domain} domain belongs to "
                              "--style exact")
        for name, value in STYLE_DEFAULTS[self.style].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)  # frozen: fill in once, at construction
        self.validate()

    # -- derived values --------------------------------------------------------------------------
    @property
    def effective_step_size(self) -> float:
        """The step size in use: the given one, or the domain's default."""
        return DEFAULT_STEP_SIZE[self.domain] if self.step_size is None else self.step_size

    # -- checks ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` (one line naming the flag) for any inconsistent knob."""
        for item in dataclasses.fields(self):
            if item.metadata["choices"] is not None and item.name != "style":
                _choice(getattr(self, item.name), item.metadata["choices"], item.metadata["flag"])
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            low, high = item.metadata["min"], item.metadata["max"]
            if isinstance(value, bool) or value is None or not isinstance(value, int | float):
                continue
            if not math.isfinite(value):
                raise ConfigError(f"{item.metadata['flag']} must be a finite number, got {value}")
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
                raise ConfigError(f"{item.metadata['flag']} must be {bounds}, got {value}")
        if self.domain != "waveform" and (self.rule != "additive" or self.flip):
            raise ConfigError("--rule and --flip belong to the waveform domain; add "
                              "--domain waveform")
        if self.flip and self.rule == "additive":
            raise ConfigError("--flip applies to the filter, filter-add and target rules")
        if not self.effective_step_size > 0:
            raise ConfigError(f"--step-size must be > 0, got {self.step_size}")
        if self.until is not None and not self.until > 0.0:
            raise ConfigError(f"--until must be a confidence in (0, 1], got {self.until}")
        if self.max_rmse_db is not None and not self.max_rmse_db > 0:
            raise ConfigError(f"--max-rmse-db must be > 0 dB, got {self.max_rmse_db}")
        if self.octaves > 1 and self.domain != "spectrogram":
            raise ConfigError("--octaves needs the spectrogram domain (--domain spectrogram)")
        if not self.octave_scale > 1:
            raise ConfigError(f"--octave-scale must be > 1, got {self.octave_scale}")
        if self.until_rendered and self.until is None:
            raise ConfigError("--until-rendered needs --until")
        if self.changes and self.domain not in SOUND_DOMAINS:
            raise ConfigError("--changes needs a sound domain (--domain envelope or samples)")

    @property
    def is_sound(self) -> bool:
        """Whether the dream changes a sound every model hears (envelope, samples)."""
        return self.domain in SOUND_DOMAINS

    def check_sonifiable(self) -> None:
        """Raise :class:`ConfigError` unless a sonification can use this configuration: it
        turns the gradient of a model's own input (an exact domain) into sound."""
        if self.is_sound:
            raise ConfigError(f"sonify turns the gradient of a model's own input into sound, "
                              f"and the {self.domain} domain is not one: use --style exact "
                              "(--domain spectrogram or waveform)")

    # -- construction and JSON --------------------------------------------------------------------
    @classmethod
    def from_kwargs(cls, **values: Any) -> DreamConfig:
        """A config from keyword arguments; an unknown name is a one-line error with a guess."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                raise ConfigError(f"unknown dream setting {key!r}." + did_you_mean(key, names))
        return cls(**_coerce(cls, values))

    def replace(self, **values: Any) -> DreamConfig:
        """A copy with some knobs changed (validated again)."""
        return self.from_kwargs(**{**self.to_dict(), **values})

    def to_dict(self) -> dict[str, Any]:
        """The knobs as given (``step_size`` may be None: the domain's default)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> dict[str, Any]:
        """The knobs in use, as reports store them: ``step_size`` resolved, with its unit."""
        out = self.to_dict()
        out["step_size"] = self.effective_step_size
        out["step_size_unit"] = "dB" if self.domain in ("spectrogram", "envelope") \
            else "x input RMS"
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DreamConfig:
        """Inverse of :meth:`to_json` (and of :meth:`to_dict`)."""
        values = {k: v for k, v in data.items() if k != "step_size_unit"}
        return cls.from_kwargs(**values)

    @classmethod
    def knobs(cls) -> list[dataclasses.Field]:
        """The fields with their metadata, in declaration order (for the CLI and the studio)."""
        return list(dataclasses.fields(cls))


def _choice(value: str, choices: tuple[str, ...], flag: str) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} {value!r} is not one of: {', '.join(choices)}."
                          + did_you_mean(str(value), choices))


def _coerce(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Cast numbers given as other numeric types (numpy scalars, ints for floats) to the field's
    type, so that JSON round trips and numpy inputs compare equal to hand-made configs."""
    kinds = {f.name: f.default for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        default = kinds[key]
        if value is None or isinstance(value, bool):
            out[key] = value
        elif isinstance(default, bool):
            out[key] = bool(value)
        elif isinstance(default, int) and not isinstance(value, str):
            if float(value) != int(value):
                raise ConfigError(f"setting {key} must be a whole number, got {value}")
            out[key] = int(value)
        elif isinstance(default, float) or (default is None and not isinstance(value, str)):
            out[key] = float(value) if key not in _OPTIONAL_INTS else int(value)
        else:
            out[key] = value
    return out


#: Optional knobs (default None) that hold whole numbers.
_OPTIONAL_INTS = {"snapshot_every", "changes"}
