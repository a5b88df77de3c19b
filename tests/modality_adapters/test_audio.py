"""Audio adapter: WAV/FLAC/OGG/MP3 at many rates and depths decode, and 16 kHz mono equals the official recipe."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from PIL import Image

from modality_adapters import AdapterLimits, get_adapter
from unirep_errors import InputTooLargeError, UndecodableInputError


def official_recipe(waveform: torch.Tensor, target_length: int = 128) -> torch.Tensor:
    """``Audio/src/dataloader.py`` ``_wav2fbank`` + ``__getitem__`` normalization + the model's transpose."""
    waveform = waveform - waveform.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        waveform,
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_shift=10,
    )
    p = target_length - fbank.shape[0]
    if p > 0:
        fbank = torch.nn.ZeroPad2d((0, 0, 0, p))(fbank)
    elif p < 0:
        fbank = fbank[0:target_length, :]
    fbank = (fbank - -6.845978) / (5.5654526 * 2)
    return fbank.unsqueeze(0).transpose(1, 2)  # (1, T, F) -> (1, F, T): frequency on the height axis


@pytest.mark.parametrize("seconds", [0.5, 1.0, 1.5])
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_equals_official_recipe_16k_mono(media, seconds, subtype) -> None:
    data = media.wav(seconds=seconds, rate=16000, subtype=subtype)
    wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # what torchaudio.load returns, (N, 1)
    assert rate == 16000
    expected = official_recipe(torch.from_numpy(wave.T.copy()))
    got = get_adapter("audio").decode(data)
    assert got.shape == expected.shape == (1, 128, 128)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_audioset_settings(media) -> None:
    data = media.wav(seconds=2.0)
    got = get_adapter("audio").decode(data, target_frames=1024, norm_mean=-4.2677393, norm_std=4.5689974)
    assert got.shape == (1, 128, 1024)
    # 2 s = 198 frames; the rest is zero padding normalized: (0 - mean) / (2 std).
    torch.testing.assert_close(got[0, :, 500], torch.full((128,), 4.2677393 / (2 * 4.5689974)))


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_rates_and_channels(media, rate, channels) -> None:
    out = get_adapter("audio").decode(media.wav(seconds=0.6, rate=rate, channels=channels))
    assert out.shape == (1, 128, 128) and torch.isfinite(out).all()


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_depths(media, subtype) -> None:
    out = get_adapter("audio").decode(media.wav(seconds=0.5, rate=22050, subtype=subtype))
    assert out.shape == (1, 128, 128) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [("FLAC", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("OGG", "OPUS"), ("MP3", "MPEG_LAYER_III")],
)
def test_compressed_formats(media, fmt, subtype) -> None:
    rate = 48000 if subtype == "OPUS" else 44100
    try:
        data = media.wav(seconds=1.0, rate=rate, channels=2, subtype=subtype, fmt=fmt)
    except (sf.LibsndfileError, ValueError, TypeError) as exc:  # pragma: no cover - depends on libsndfile build
        pytest.skip(f"libsndfile cannot write {fmt}/{subtype}: {exc}")
    out = get_adapter("audio").decode(data)
    assert out.shape == (1, 128, 128) and torch.isfinite(out).all()
    # Same tone as a WAV: the spectrograms agree closely where there is signal.
    ref = get_adapter("audio").decode(media.wav(seconds=1.0, rate=rate, channels=2))
    assert (out[:, :, 10:90] - ref[:, :, 10:90]).abs().mean() < 0.1


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_fallback_reads_aac_in_mp4(media) -> None:
    wav = media.wav(seconds=1.0, rate=44100)
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "wav",
        "-i",
        "pipe:0",
        "-c:a",
        "aac",
        "-f",
        "adts",
        "pipe:1",
    ]
    aac = subprocess.run(cmd, input=wav, capture_output=True, check=True, timeout=60).stdout
    adapter = get_adapter("audio")
    with pytest.raises(sf.LibsndfileError):
        sf.info(io.BytesIO(aac))  # soundfile alone cannot read it
    out = adapter.decode(aac)
    ref = adapter.decode(wav)
    assert out.shape == (1, 128, 128)
    assert (out[:, :, 10:90] - ref[:, :, 10:90]).abs().mean() < 0.15


def test_stereo_is_averaged_to_mono(media) -> None:
    stereo = media.wav(seconds=1.0, channels=2, subtype="FLOAT")
    wave, _ = sf.read(io.BytesIO(stereo), dtype="float32", always_2d=True)
    mono = torch.from_numpy(wave.mean(axis=1, dtype=np.float64).astype(np.float32)[None])
    torch.testing.assert_close(get_adapter("audio").decode(stereo), official_recipe(mono), atol=1e-5, rtol=0)


def test_duration_limit_from_header(media) -> None:
    adapter = get_adapter("audio", AdapterLimits(max_audio_seconds=0.5))
    with pytest.raises(InputTooLargeError, match="long"):
        adapter.decode(media.wav(seconds=1.0))


def test_too_short_is_actionable(media) -> None:
    with pytest.raises(UndecodableInputError, match="need at least 25 ms"):
        get_adapter("audio").decode(media.wav(seconds=0.01))


def test_preview_is_a_spectrogram_png(media) -> None:
    adapter = get_adapter("audio")
    png = adapter.preview(adapter.decode(media.wav()))
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] >= 128 and image.size[1] >= 128
