"""Audio dataset sources (a synthetic notes set, user WAV folders) and mu-law companding.

A prepared audio dataset has kind ``"audio"``: ``x`` is float32 (N, C, T) in [-1, 1] (C = 1 for mono), at the
``sample_rate`` recorded in ``extras`` with the clip length ``seconds``.

- ``notes``: single notes generated here, deterministically from ``seed`` (no download). 12 pitch classes
  (C, C#, ..., B: the audited label) over MIDI 48-83 (C3-B5, 131-988 Hz), in four timbres: ``sine`` (an almost
  pure tone), ``bright`` (sawtooth-like, harmonics 1/k), ``hollow`` (odd harmonics 1/k, square-like) -- all
  band-limited below Nyquist, with ADSR envelopes -- and ``pluck``, a Karplus-Strong string (Karplus & Strong
  1983, with Jaffe & Smith 1983's decay stretching and all-pass fine tuning). Every clip gets a random
  detuning of up to 5 cents, a random peak level and white noise 45 dB below it. The timbre and the MIDI
  note of each clip are per-sample attributes beside the label (``RawData.attributes``).
- ``audiofolder``: WAV files under ``path`` (one sub-folder per class, or unlabelled), 8/16/24/32-bit PCM,
  resampled to ``sample_rate`` and cut to the first ``seconds``.

Mu-law companding (the classes of WaveNet's softmax) lives with the family, in ``components.models.wavenet``.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from components.data.paths import user_path, within
from components.data.spec import RawData
from components.errors import DataError

if TYPE_CHECKING:
    pass

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")  # MIDI note % 12
TIMBRES = ("sine", "bright", "hollow", "pluck")
MIDI_LOW, MIDI_HIGH = 48, 83  # C3 .. B5: three octaves
DEFAULT_N_PER_CLASS = 84  # 12 classes × 84 = 1008 clips: 7 per (class, timbre, octave)
DETUNE_CENTS = 5.0
NOISE_DB = -45.0  # white noise level relative to the clip's peak
PLUCK_DECAY_DB_PER_S = 30.0  # every Karplus-Strong note loses 30 dB per second at its fundamental
WAV_SUFFIXES = {".wav", ".wave"}
MAX_CLASSES = 1000
_HARMONIC_SHARE = 0.95  # additive timbres keep harmonics below 0.95 × Nyquist


def midi_to_hz(midi: np.ndarray | float) -> np.ndarray:
    """Equal temperament, A4 = MIDI 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def clip_length(sample_rate: int, seconds: float) -> int:
    """Samples per clip: ``round(seconds × sample_rate)``."""
    return int(round(seconds * sample_rate))


# ---------------------------------------------------------------------------------------------- notes


def load_notes(
    *,
    n_per_class: int = DEFAULT_N_PER_CLASS,
    sample_rate: int = 8000,
    seconds: float = 0.5,
    seed: int = 0,
    **_: object,
) -> RawData:
    """``12 × n_per_class`` synthetic notes, float32 (N, 1, T) in [-1, 1], T = round(seconds × sample_rate).

    Clip ``i`` of pitch class ``c`` has timbre ``TIMBRES[i % 4]`` and octave ``i % 3`` (MIDI
    ``48 + 12 × octave + c``): every (timbre, octave) pair once in each 12 clips of a class, so classes,
    timbres and octaves are balanced (exactly when 12 divides ``n_per_class``); detuning, envelope, phases,
    level and noise are drawn from ``seed``. The same arguments give the same bytes. Clips are ordered by
    pitch class. ``attributes``: ``timbre`` (index into ``TIMBRES``) and ``midi`` (the note before detuning, as
    ``note - 48``).
    """
    if n_per_class < 1:
        raise DataError(f"notes: expected n_per_class >= 1, got {n_per_class}")
    top = float(midi_to_hz(MIDI_HIGH + DETUNE_CENTS / 100))
    if sample_rate < 4 * top:
        raise DataError(
            f"notes: expected sample_rate >= {math.ceil(4 * top)} Hz (4 samples per period of the highest note, "
            f"B5), got {sample_rate}; raise sample_rate"
        )
    T = clip_length(sample_rate, seconds)
    if T < sample_rate * 0.05:
        raise DataError(f"notes: expected seconds >= 0.05, got {seconds}; raise seconds")
    n_octaves = (MIDI_HIGH - MIDI_LOW + 1) // 12
    i = np.arange(n_per_class)
    y = np.repeat(np.arange(12), n_per_class).astype(np.int64)  # (N,)
    timbre = np.tile(i % len(TIMBRES), 12).astype(np.int64)  # (N,)
    midi = (MIDI_LOW + 12 * np.tile(i % n_octaves, 12) + y).astype(np.int64)  # (N,)
    rng = np.random.default_rng(seed)
    N = len(y)
    f0 = midi_to_hz(midi) * 2.0 ** (rng.uniform(-DETUNE_CENTS, DETUNE_CENTS, N) / 1200)  # (N,) Hz
    x = np.zeros((N, T), dtype=np.float64)
    t = np.arange(T) / sample_rate  # (T,) seconds
    additive = timbre != TIMBRES.index("pluck")
    for k, name in enumerate(TIMBRES[:3]):
        rows = np.flatnonzero(timbre == k)
        x[rows] = _additive(name, f0[rows], t, sample_rate, rng) * _adsr(len(rows), t, rng)
    rows = np.flatnonzero(~additive)
    for r in rows:
        x[r] = _karplus_strong(f0[r], T, sample_rate, rng)
    x[rows] *= _attack_release(len(rows), t, rng)
    x /= np.abs(x).max(axis=1, keepdims=True)  # peak 1
    peak = rng.uniform(0.3, 0.9, (N, 1))
    noise = rng.standard_normal((N, T)) * 10 ** (NOISE_DB / 20)
    x = np.clip(peak * (x + noise), -1.0, 1.0)
    return RawData(
        x=x.astype(np.float32)[:, None],  # (N, 1, T)
        y=y,
        kind="audio",
        class_names=PITCH_CLASSES,
        extras={
            "sample_rate": int(sample_rate),
            "seconds": float(seconds),
            "timbres": list(TIMBRES),
            "midi_range": [MIDI_LOW, MIDI_HIGH],
        },
        attributes={
            "timbre": (timbre, TIMBRES),
            "midi": (midi - MIDI_LOW, tuple(str(m) for m in range(MIDI_LOW, MIDI_HIGH + 1))),  # id = note - 48
        },
    )


def _additive(name: str, f0: np.ndarray, t: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limited harmonic sums (n, T) for fundamentals ``f0`` (n,), random phase per harmonic."""
    n_harm = int(_HARMONIC_SHARE * sample_rate / 2 / f0.min()) if len(f0) else 0
    k = np.arange(1, n_harm + 1)  # (K,)
    if name == "sine":
        amp = np.where(k == 1, 1.0, np.where(k == 2, 0.08, np.where(k == 3, 0.03, 0.0)))
    elif name == "bright":
        amp = 1.0 / k  # sawtooth
    else:  # hollow
        amp = np.where(k % 2 == 1, 1.0 / k, 0.0)  # square wave: odd harmonics only
    phase = rng.uniform(0, 2 * np.pi, (len(f0), n_harm))  # (n, K)
    out = np.zeros((len(f0), len(t)))
    for j in range(n_harm):
        audible = (k[j] * f0 < _HARMONIC_SHARE * sample_rate / 2) * amp[j]  # (n,) no aliasing
        if audible.any():
            out += audible[:, None] * np.sin(2 * np.pi * k[j] * f0[:, None] * t + phase[:, j : j + 1])
    return out


def _adsr(n: int, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ADSR envelopes (n, T): linear attack 5-30 ms, decay 30-100 ms to a sustain of 0.5-0.8, release over
    the last 30-80 ms."""
    attack, decay = rng.uniform(0.005, 0.03, (n, 1)), rng.uniform(0.03, 0.1, (n, 1))
    sustain, release = rng.uniform(0.5, 0.8, (n, 1)), rng.uniform(0.03, 0.08, (n, 1))
    end = t[-1] + (t[1] - t[0])
    a = np.minimum(t / attack, 1.0)
    d = 1.0 - (1.0 - sustain) * np.clip((t - attack) / decay, 0.0, 1.0)
    r = np.clip((end - t) / release, 0.0, 1.0)
    return a * d * r


def _attack_release(n: int, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 1-3 ms attack and a 30-80 ms release (n, T): the plucked string decays by itself."""
    attack, release = rng.uniform(0.001, 0.003, (n, 1)), rng.uniform(0.03, 0.08, (n, 1))
    end = t[-1] + (t[1] - t[0])
    return np.minimum(t / attack, 1.0) * np.clip((end - t) / release, 0.0, 1.0)


def _karplus_strong(f0: float, T: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A plucked string at ``f0`` Hz: a noise burst circulating in a delay line with a loss filter.

    Loop: delay z^-N, loss filter (1 - S) + S z^-1 with gain ρ, first-order all-pass (C + z^-1) / (1 + C z^-1)
    for the fractional part of the period (Jaffe & Smith 1983). S (the "decay stretch") and ρ are set so that
    the fundamental loses ``PLUCK_DECAY_DB_PER_S`` per second at every pitch; C gives the all-pass the exact
    remaining phase delay at ω0. Solved as one IIR filter (scipy.signal.lfilter).
    """
    from scipy.signal import lfilter

    w0 = 2 * np.pi * f0 / sample_rate
    r = 10 ** (-PLUCK_DECAY_DB_PER_S / 20 / f0)  # wanted loop gain per period
    if math.cos(w0 / 2) >= r:  # S = 1/2 (the original two-point average) loses too little: ρ < 1 makes up
        S, rho = 0.5, r / math.cos(w0 / 2)
    else:  # |(1 - S) + S e^{-jω0}|² = 1 - 2S(1 - S)(1 - cos ω0) = r²
        q = (1 - r * r) / (2 * (1 - math.cos(w0)))
        S, rho = (1 - math.sqrt(1 - 4 * q)) / 2, 1.0
    loss_delay = -math.atan2(-S * math.sin(w0), 1 - S + S * math.cos(w0)) / w0  # phase delay of the loss filter
    period = sample_rate / f0
    N = int(math.floor(period - loss_delay - 0.1))
    d = period - N - loss_delay  # all-pass delay in [0.1, 1.1)
    C = math.sin(w0 * (1 - d) / 2) / math.sin(w0 * (1 + d) / 2)  # exact phase delay d at ω0
    b = np.array([1.0, C])
    a = np.zeros(N + 3)
    a[0], a[1] = 1.0, C
    a[N : N + 3] -= rho * np.array([(1 - S) * C, (1 - S) + S * C, S])  # ρ z^-N ((1-S) + S z^-1)(C + z^-1)
    burst = np.zeros(T)
    n_burst = min(N, T)
    burst[:n_burst] = rng.uniform(-1, 1, n_burst)
    burst[:n_burst] -= burst[:n_burst].mean()  # no DC: it would circulate forever
    return lfilter(b, a, burst)


# ---------------------------------------------------------------------------------------------- mu-law


# ---------------------------------------------------------------------------------------------- WAV files


def load_audiofolder(
    *,
    path: str | None,
    sample_rate: int = 8000,
    seconds: float = 0.5,
    mono: bool = True,
    max_classes: int = MAX_CLASSES,
    follow_symlinks: bool = False,
    **_: object,
) -> RawData:
    """WAV files under ``path``: one sub-folder per class if there are sub-folders (files at any depth
    below it), else the ``.wav`` files of ``path`` itself, unlabelled.

    Each file must be 8/16/24/32-bit integer PCM (plain or WAVE_FORMAT_EXTENSIBLE), non-empty, at least
    ``seconds`` long (longer ones are cut to the first ``seconds``), and mono when ``mono`` (otherwise every
    file must have the same number of channels). Clips are resampled to ``sample_rate`` with
    ``scipy.signal.resample_poly`` (polyphase, Kaiser-windowed anti-aliasing filter) and clipped to [-1, 1]
    (a resampled full-scale clip can overshoot slightly). The first bad file stops the load with one line
    naming it and the fix; nothing partial is returned. Names starting with ``.`` are skipped; a symlink
    leading outside ``path`` is refused unless ``follow_symlinks``.
    """
    if sample_rate < 1 or seconds <= 0:
        raise DataError(f"audiofolder: expected sample_rate >= 1 and seconds > 0, got {sample_rate} and {seconds}")
    root = user_path(path, "audiofolder", follow_symlinks=follow_symlinks)
    if not root.is_dir():
        got = "a file" if root.exists() else "nothing"
        raise DataError(f"audiofolder: expected a folder of .wav files at {root}, got {got}; fix 'path'")
    top = root.resolve()
    entries = _visible(sorted(root.iterdir()))
    subdirs = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if _is_wav(p)]
    if subdirs:
        if loose:
            raise DataError(
                f"audiofolder: {root} has both class sub-folders and {len(loose)} WAV file(s) at the top level "
                f"({loose[0].name}, ...); move the files into a class folder"
            )
        if len(subdirs) > max_classes:
            raise DataError(
                f"audiofolder: {root}: expected at most {max_classes} class folders (max_classes), got "
                f"{len(subdirs)}; raise max_classes for this dataset or merge classes"
            )
        files: list[tuple[Path, int]] = []
        for c, d in enumerate(subdirs):
            found = [p for p in _visible(sorted(d.rglob("*")), below=d) if _is_wav(p)]
            if not found:
                raise DataError(
                    f"audiofolder: class folder {d} has no .wav files; expected at least one per class: add "
                    "files or remove the folder"
                )
            files += [(p, c) for p in found]
        class_names = tuple(d.name for d in subdirs)
    else:
        files, class_names = [(p, -1) for p in loose], ()
    if not files:
        raise DataError(f"audiofolder: no .wav files in {root}; add WAV files (optionally in class sub-folders)")
    T = clip_length(sample_rate, seconds)
    clips, rates, depths, channels = [], set(), set(), None
    for f, _label in files:
        if not follow_symlinks and not within(f.resolve(), top):
            raise DataError(
                f"audiofolder: {f} leads to {f.resolve()}, outside {top}; copy the file into the folder, or set "
                "follow_symlinks: true for this dataset if you trust the link"
            )
        data, rate, bits = read_wav(f)  # (C, n)
        if mono and data.shape[0] != 1:
            raise DataError(
                f"audiofolder: {f}: expected mono (1 channel), got {data.shape[0]} channels; downmix it (e.g. "
                "`sox in.wav -c 1 out.wav`) or set mono: false"
            )
        if channels is not None and data.shape[0] != channels:
            raise DataError(
                f"audiofolder: {f}: expected {channels} channels like the files before it, got {data.shape[0]}; "
                "give every file the same channel count"
            )
        channels = data.shape[0]
        clips.append(_fit(data, rate, sample_rate, seconds, T, f))
        rates.add(rate)
        depths.add(bits)
    x = np.stack(clips).astype(np.float32)  # (N, C, T)
    y = np.array([lab for _, lab in files], dtype=np.int64) if class_names else None
    return RawData(
        x=x,
        y=y,
        kind="audio",
        class_names=class_names,
        extras={
            "sample_rate": int(sample_rate),
            "seconds": float(seconds),
            "source_sample_rates": sorted(rates),
            "bit_depths": sorted(depths),
        },
    )


def _visible(paths: list[Path], below: Path | None = None) -> list[Path]:
    """``paths`` without those with a part (below ``below``) starting with ``.``."""
    keep = []
    for p in paths:
        parts = p.relative_to(below).parts if below is not None else (p.name,)
        if not any(s.startswith(".") for s in parts):
            keep.append(p)
    return keep


def _is_wav(p: Path) -> bool:
    return p.suffix.lower() in WAV_SUFFIXES and p.is_file()


def _fit(data: np.ndarray, rate: int, sample_rate: int, seconds: float, T: int, f: Path) -> np.ndarray:
    """``data`` (C, n) at ``rate`` -> (C, T) at ``sample_rate``: the first ``seconds``, resampled."""
    from scipy.signal import resample_poly

    need = math.ceil(T * rate / sample_rate)  # input frames behind T output samples
    if data.shape[1] < need:
        raise DataError(
            f"audiofolder: {f}: expected at least {seconds} s ({need} frames at {rate} Hz), got "
            f"{data.shape[1] / rate:.3f} s ({data.shape[1]} frames); use longer clips, lower 'seconds', or remove it"
        )
    if rate == sample_rate:
        return data[:, :T]
    g = math.gcd(sample_rate, rate)
    up, down = sample_rate // g, rate // g
    margin = 20 * max(1, down // up) + 64  # beyond the filter's reach: the cut end is not tapered
    out = resample_poly(data[:, : need + margin].astype(np.float64), up, down, axis=1)
    return np.clip(out[:, :T], -1.0, 1.0)


def read_wav(f: str | Path) -> tuple[np.ndarray, int, int]:
    """``(data, sample_rate, bits)`` of a PCM WAV file: data float64 (C, n) in [-1, 1).

    8-bit files are unsigned (offset 128), 16/24/32-bit signed little-endian; each is scaled by 2^-(bits-1).
    Read with the stdlib ``wave`` module; WAVE_FORMAT_EXTENSIBLE files (which Python 3.11's ``wave`` refuses)
    with ``scipy.io.wavfile``. Raises :class:`DataError` naming the file and the fix.
    """
    fix = "re-export it as 16-bit PCM WAV"
    try:
        with wave.open(str(f), "rb") as w:
            ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except EOFError:
        size = Path(f).stat().st_size
        got = "an empty file" if size == 0 else f"a truncated header ({size} bytes)"
        raise DataError(f"audiofolder: {f}: expected a WAV file, got {got}; {fix} or remove it") from None
    except wave.Error as e:
        if "unknown format: 65534" in str(e):  # WAVE_FORMAT_EXTENSIBLE
            return _read_extensible(f)
        if "unknown format" in str(e):
            tag = str(e).rsplit(":", 1)[-1].strip()
            what = "IEEE float" if tag == "3" else f"format tag {tag}"
            raise DataError(f"audiofolder: {f}: expected integer PCM samples, got {what}; {fix}") from None
        raise DataError(f"audiofolder: {f}: expected a RIFF/WAVE file, got a bad header ({e}); {fix}") from None
    except OSError as e:
        raise DataError(f"audiofolder: {f}: cannot read the file ({e}); fix its permissions or remove it") from None
    bits = 8 * width
    if width not in (1, 2, 3, 4):
        raise DataError(f"audiofolder: {f}: expected 8-, 16-, 24- or 32-bit PCM, got {bits}-bit samples; {fix}")
    if ch < 1 or rate < 1:
        raise DataError(f"audiofolder: {f}: expected >= 1 channel and a sample rate >= 1, got {ch} and {rate}; {fix}")
    if n == 0:
        raise DataError(f"audiofolder: {f}: expected audio frames, got an empty data chunk; {fix} or remove it")
    got = len(raw) // (ch * width)
    if got < n:
        raise DataError(
            f"audiofolder: {f}: expected {n} frames (the header's count), got {got}: the file is truncated; {fix}"
        )
    if width == 1:
        a = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128) / 128
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        a = ((v ^ 0x800000) - 0x800000) / 2.0**23  # sign-extend 24 bits
    else:
        a = np.frombuffer(raw, f"<i{width}").astype(np.float64) / 2.0 ** (bits - 1)
    return a.reshape(n, ch).T.copy(), rate, bits


def _read_extensible(f: str | Path) -> tuple[np.ndarray, int, int]:
    from scipy.io import wavfile

    fix = "re-export it as 16-bit PCM WAV"
    try:
        rate, data = wavfile.read(str(f))
    except Exception as e:  # ValueError for unsupported sub-formats and bad chunks
        raise DataError(f"audiofolder: {f}: expected a PCM WAV file, got one scipy cannot read ({e}); {fix}") from None
    scale = {np.dtype(np.uint8): 128.0, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}
    if data.dtype not in scale:
        raise DataError(f"audiofolder: {f}: expected 8/16/24/32-bit integer PCM, got {data.dtype} samples; {fix}")
    if data.size == 0:
        raise DataError(f"audiofolder: {f}: expected audio frames, got an empty data chunk; {fix} or remove it")
    a = data.astype(np.float64)
    a = (a - 128) / 128 if data.dtype == np.uint8 else a / scale[data.dtype]  # 24-bit comes left-justified in int32
    with open(f, "rb") as fh:
        head = fh.read(256)
    at = head.find(b"fmt ")  # the container's bits per sample (scipy returns 24-bit data as int32)
    bits = int.from_bytes(head[at + 22 : at + 24], "little") if at >= 0 else 8 * data.dtype.itemsize
    return (a[None] if a.ndim == 1 else a.T).copy(), int(rate), bits


def write_wav(path: str | Path, x: Any, sample_rate: int) -> None:
    """A waveform (T,) or (C, T) in [-1, 1] (numpy or torch) as a 16-bit PCM WAV file (e.g. to listen to
    samples)."""
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    a = a[None] if a.ndim == 1 else a
    pcm = np.round(np.clip(a, -1.0, 1.0) * 32767).astype("<i2")  # (C, T)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(a.shape[0])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.T.tobytes())
