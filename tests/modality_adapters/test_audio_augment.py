"""Audio training augmentation: pitch shift and time stretch act on the cached waveform before the served filter
bank, and the un-augmented training input is bit for bit what the service decodes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from modality_adapters import get_adapter
from modality_adapters.training_augment import augment_waveform, pitch_shift, time_stretch
from unirep_errors import UndecodableInputError

RATE = 16000


def _tone(freq: float, seconds: float = 0.8, rate: int = RATE) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return (0.5 * torch.sin(2 * torch.pi * freq * t)).to(torch.float32).unsqueeze(0)


def _peak_hz(wave: torch.Tensor, rate: int = RATE) -> float:
    """The strongest frequency of the middle of the clip (the edges carry the vocoder's ramps)."""
    n = wave.shape[-1]
    middle = wave[0, n // 4 : 3 * n // 4].double()
    spectrum = torch.fft.rfft(middle * torch.hann_window(len(middle), dtype=torch.float64)).abs()
    return float(spectrum.argmax()) * rate / len(middle)


def _wav(wave: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.mark.parametrize("semitones", [-3.0, -1.5, 2.0, 3.0])
def test_pitch_shift_moves_the_pitch_and_keeps_the_length(semitones: float) -> None:
    wave = _tone(440.0)
    out = pitch_shift(wave, RATE, semitones)
    assert out.shape == wave.shape and torch.isfinite(out).all()
    expected = 440.0 * 2 ** (semitones / 12)
    assert abs(_peak_hz(out) - expected) < 0.02 * expected, (_peak_hz(out), expected)


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_time_stretch_changes_the_length_and_keeps_the_pitch(rate: float) -> None:
    wave = _tone(600.0)
    out = time_stretch(wave, rate)
    assert out.shape[-1] == round(wave.shape[-1] / rate)
    assert abs(_peak_hz(out) - 600.0) < 12.0


def test_waveform_augmentation_is_seeded_and_spares_too_short_clips() -> None:
    wave = _tone(300.0)
    before = wave.clone()
    runs = [augment_waveform(wave, RATE, torch.Generator().manual_seed(s), probability=1.0) for s in (5, 5, 6)]
    torch.testing.assert_close(wave, before)
    torch.testing.assert_close(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2]) and not torch.equal(runs[0][..., : wave.shape[-1]], wave)
    short = _tone(300.0, seconds=0.025)  # one analysis frame, shorter than the vocoder's
    assert torch.equal(augment_waveform(short, RATE, torch.Generator().manual_seed(0), probability=1.0), short)


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (22050, 2), (8000, 1)])
def test_training_caches_the_waveform_and_rebuilds_the_served_map_exactly(rate: int, channels: int) -> None:
    adapter, params = get_adapter("audio"), {"num_mel_bins": 64, "target_frames": 96}
    rng = np.random.default_rng(rate)
    data = _wav(rng.uniform(-0.4, 0.4, (int(0.7 * rate), channels)).astype(np.float32), rate)
    cached = adapter.decode_for_training(data, **params)
    assert cached.shape == (1, round(0.7 * 16000))  # the waveform at the model's 16 kHz, not the map
    assert torch.equal(adapter.training_input(cached, **params), adapter.decode(data, **params))


def test_augmented_maps_differ_from_spec_augment_alone() -> None:
    """Pitch and tempo change the filter bank itself: cells outside SpecAugment's masks move too."""
    adapter, params = get_adapter("audio"), {"num_mel_bins": 64, "target_frames": 96}
    t = np.arange(int(0.9 * RATE)) / RATE
    sweep = (0.4 * np.sin(2 * np.pi * (300 + 400 * t) * t) * np.exp(-2 * t)).astype(np.float32)
    cached = adapter.decode_for_training(_wav(sweep, RATE), **params)
    plain = adapter.training_input(cached, **params)
    moved = 0
    for seed in range(8):
        out = adapter.augment(cached, torch.Generator().manual_seed(seed), **params)
        assert out.shape == plain.shape and torch.isfinite(out).all()
        unmasked = (out != 0) & (plain != 0)
        moved += int(((out - plain).abs() > 1e-3)[unmasked].any())
    assert moved >= 4  # each of pitch and tempo is drawn half of the time


def test_training_decode_refuses_what_serving_refuses() -> None:
    adapter = get_adapter("audio")
    too_short = _wav(np.zeros(100, dtype=np.float32), RATE)
    for decode in (adapter.decode, adapter.decode_for_training):
        with pytest.raises(UndecodableInputError, match="25 ms"):
            decode(too_short)
        with pytest.raises(UndecodableInputError):
            decode(b"")
