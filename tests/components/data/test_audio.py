import struct
import wave

import numpy as np
import pytest
import torch

from components.data import prepare_dataset
from components.data.audio import (
    MIDI_LOW,
    PITCH_CLASSES,
    TIMBRES,
    load_audiofolder,
    load_notes,
    read_wav,
    write_wav,
)
from components.errors import DataError
from components.evaluation.pitch import pitch_classes, yin


@pytest.fixture(scope="module")
def notes():
    return load_notes(n_per_class=8)  # 96 clips of 0.5 s at 8 kHz: every (class, timbre) twice


def test_notes_are_deterministic_labelled_and_in_range(notes):
    again, other = load_notes(n_per_class=8), load_notes(n_per_class=8, seed=1)
    assert notes.x.tobytes() == again.x.tobytes() and np.array_equal(notes.y, again.y)
    assert notes.x.tobytes() != other.x.tobytes()
    assert notes.kind == "audio" and notes.x.dtype == np.float32 and notes.x.shape == (96, 1, 4000)
    assert -1.0 <= notes.x.min() < 0 < notes.x.max() <= 1.0
    assert notes.class_names == PITCH_CLASSES and np.bincount(notes.y).tolist() == [8] * 12
    timbre, midi = notes.attributes["timbre"][0], notes.attributes["midi"][0] + MIDI_LOW
    assert np.bincount(timbre).tolist() == [24] * len(TIMBRES) and np.array_equal(midi % 12, notes.y)
    assert 48 <= midi.min() and midi.max() <= 83 and len(np.unique(midi // 12)) == 3
    assert notes.extras["sample_rate"] == 8000 and notes.attributes["timbre"][1] == TIMBRES


def test_yin_hears_the_labelled_pitch_class_in_every_timbre(notes):
    est = yin(notes.x, 8000)
    hit = est.clear & (pitch_classes(est.f0) == notes.y)
    for k, name in enumerate(TIMBRES):
        assert hit[notes.attributes["timbre"][0] == k].mean() >= 0.95, name
    cents = 1200 * np.log2(est.f0 / (440 * 2 ** ((notes.attributes["midi"][0] + MIDI_LOW - 69) / 12)))
    assert np.abs(cents).max() < 25  # detuning (≤ 5 cents) + estimation error, far from a semitone


def test_notes_prepare_into_an_audio_dataset(notes, tmp_path):
    manifest = prepare_dataset("notes", notes, tmp_path, val=0.1, test=0.2, seed=0)
    assert manifest["spec"]["kind"] == "audio" and manifest["spec"]["shape"] == [1, 4000]
    assert manifest["splits"]["test"]["class_counts"] == [2] * 12  # stratified by pitch class
    assert -1 <= manifest["splits"]["train"]["range"][0] and manifest["splits"]["train"]["range"][1] <= 1
    assert manifest["spec"]["attributes"]["timbre"] == list(TIMBRES)
    from components.data import load_attributes, load_split

    _, y = load_split(tmp_path, "notes", "test")
    attrs = load_attributes(tmp_path, "notes", "test")
    assert set(attrs) == {"timbre", "midi"} and attrs["timbre"].shape == y.shape
    assert np.array_equal((attrs["midi"] + MIDI_LOW) % 12, y)  # the attributes split with the labels


def test_bad_notes_settings_are_one_line():
    with pytest.raises(DataError, match=r"^notes: expected sample_rate >= \d+ Hz .*; raise sample_rate$"):
        load_notes(n_per_class=1, sample_rate=2000)
    with pytest.raises(DataError, match=r"^notes: expected n_per_class >= 1, got 0$"):
        load_notes(n_per_class=0)


# -- WAV folders


def _wav(path, *, seconds=0.6, rate=16000, width=2, channels=1, freq=440.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    full = 2 ** (8 * width - 1) - 1
    v = np.repeat(np.round(x * full).astype(np.int64)[:, None], channels, axis=1).ravel()
    if width == 1:
        raw = (v + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = b"".join(struct.pack("<i", int(s))[:3] for s in v)
    else:
        raw = v.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def _patch(path, offset, fmt, value):
    b = bytearray(path.read_bytes())
    struct.pack_into(fmt, b, offset, value)
    path.write_bytes(bytes(b))


def test_a_class_folder_is_resampled_cut_and_labelled(tmp_path):
    for c, freq in (("a4", 440.0), ("c5", 523.25)):
        for i in range(2):
            _wav(tmp_path / "wavs" / c / f"{i}.wav", rate=16000 if i else 22050, freq=freq)
    (tmp_path / "wavs" / "a4" / ".hidden.wav").write_bytes(b"junk")  # skipped
    raw = load_audiofolder(path="wavs", sample_rate=8000, seconds=0.5)
    assert raw.kind == "audio" and raw.x.shape == (4, 1, 4000) and raw.x.dtype == np.float32
    assert raw.class_names == ("a4", "c5") and raw.y.tolist() == [0, 0, 1, 1]
    assert raw.extras["source_sample_rates"] == [16000, 22050] and raw.extras["bit_depths"] == [16]
    f0 = yin(raw.x, 8000).f0
    assert np.allclose(f0, [440, 440, 523.25, 523.25], rtol=0.01)
    assert np.abs(raw.x).max() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("width", [1, 3, 4])
def test_8_24_and_32_bit_pcm_read_like_16_bit(tmp_path, width):
    ref, _, _ = read_wav(_wav(tmp_path / "ref.wav", width=2))
    got, rate, bits = read_wav(_wav(tmp_path / "x.wav", width=width))
    assert rate == 16000 and bits == 8 * width and got.shape == ref.shape == (1, 9600)
    assert np.abs(got - ref).max() < (2 / 256 if width == 1 else 1e-4)


def test_wave_format_extensible_is_read(tmp_path):
    """24-bit and multichannel exporters write WAVE_FORMAT_EXTENSIBLE, which Python 3.11's wave refuses."""
    ref, _, _ = read_wav(_wav(tmp_path / "ref.wav", width=3))
    pcm = _wav(tmp_path / "plain.wav", width=3).read_bytes()[44:]  # the data chunk's samples
    guid = bytes.fromhex("0100000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_PCM
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 48000, 3, 24, 22, 24, 4) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    (tmp_path / "ext.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    got, rate, bits = read_wav(tmp_path / "ext.wav")
    assert rate == 16000 and bits == 24 and np.abs(got - ref).max() < 1e-6


def test_write_wav_round_trips(tmp_path):
    x = np.sin(np.linspace(0, 20, 800))[None] * 0.7
    write_wav(tmp_path / "o.wav", torch.tensor(x), 8000)
    got, rate, bits = read_wav(tmp_path / "o.wav")
    assert rate == 8000 and bits == 16 and np.abs(got - x).max() < 1e-4


def _corrupt(p):
    p.write_bytes(b"RIFX\x00\x00\x00\x00WAVEnot a header at all")


def _empty(p):
    p.write_bytes(b"")


def _truncated(p):
    _wav(p)
    p.write_bytes(p.read_bytes()[:1000])


def _width48(p):
    _wav(p, width=4)  # then claim 48-bit samples in the fmt chunk (block align 6, bits per sample 48)
    _patch(p, 32, "<H", 6)
    _patch(p, 34, "<H", 48)


def _float(p):
    _wav(p, width=4)
    _patch(p, 20, "<H", 3)  # WAVE_FORMAT_IEEE_FLOAT


BAD = {
    "corrupt header": (_corrupt, r"expected a RIFF/WAVE file, got a bad header .*; re-export it as 16-bit PCM WAV"),
    "empty file": (_empty, r"expected a WAV file, got an empty file; re-export"),
    "truncated data": (_truncated, r"expected 9600 frames \(the header's count\), got \d+: the file is truncated"),
    "48-bit samples": (_width48, r"expected 8-, 16-, 24- or 32-bit PCM, got 48-bit samples; re-export"),
    "float samples": (_float, r"expected integer PCM samples, got IEEE float; re-export"),
    "too short": (lambda p: _wav(p, seconds=0.3), r"expected at least 0.5 s \(8000 frames at 16000 Hz\), got 0.300 s"),
    "stereo": (lambda p: _wav(p, channels=2), r"expected mono \(1 channel\), got 2 channels; downmix it .*mono: false"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_wav_is_one_line_naming_the_file_and_nothing_loads(tmp_path, case):
    make, message = BAD[case]
    _wav(tmp_path / "wavs" / "a_good.wav")
    make(tmp_path / "wavs" / "b_bad.wav")
    with pytest.raises(DataError) as e:
        load_audiofolder(path="wavs", sample_rate=8000, seconds=0.5)
    line = str(e.value)
    assert "\n" not in line and line.startswith("audiofolder: ") and "b_bad.wav" in line
    assert "a_good.wav" not in line
    assert e.match(message), line


def test_folder_layout_errors_name_the_folder(tmp_path):
    _wav(tmp_path / "mixed" / "cls" / "a.wav")
    _wav(tmp_path / "mixed" / "loose.wav")
    with pytest.raises(DataError, match=r"has both class sub-folders and 1 WAV file\(s\) at the top level"):
        load_audiofolder(path="mixed")
    (tmp_path / "hollow" / "empty_class").mkdir(parents=True)
    _wav(tmp_path / "hollow" / "full" / "a.wav")
    with pytest.raises(DataError, match=r"class folder .*empty_class has no \.wav files"):
        load_audiofolder(path="hollow")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match=r"no \.wav files in none"):
        load_audiofolder(path="none")
    _wav(tmp_path / "two" / "a.wav")
    _wav(tmp_path / "two" / "b.wav", channels=2)
    with pytest.raises(DataError, match=r"b\.wav: expected 1 channels like the files before it, got 2"):
        load_audiofolder(path="two", mono=False)
    _wav(tmp_path / "stereo" / "a.wav", channels=2)
    _wav(tmp_path / "stereo" / "b.wav", channels=2)
    raw = load_audiofolder(path="stereo", mono=False, seconds=0.5, sample_rate=16000)
    assert raw.x.shape == (2, 2, 8000) and raw.y is None


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = _wav(tmp_path / "elsewhere" / "x.wav")
    (tmp_path / "wavs").mkdir()
    (tmp_path / "wavs" / "link.wav").symlink_to(outside)
    with pytest.raises(DataError, match=r"link\.wav leads to .*outside .*follow_symlinks: true"):
        load_audiofolder(path="wavs")
    assert load_audiofolder(path="wavs", follow_symlinks=True).x.shape == (1, 1, 4000)
