"""Audio adapter: the official UniRepLKNet audio recipe (AST's dataloader), from bytes to a 1 x mel x time map.

Recipe (``Audio/src/dataloader.py``): mono waveform at 16 kHz, mean removed, ``torchaudio.compliance.kaldi.fbank``
(htk_compat, no energy, Hanning window, 128 mel bins, no dither, 10 ms shift), zero-pad or cut to the target
frame count, then ``(x - mean) / (2 * std)``; the model sees frequency on the height axis and time on the width.

Decoding: soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF) first, because it reads from memory and
tells duration from the header; ffmpeg in a subprocess (with a timeout) as the fallback for anything else it
can read (AAC/M4A, WebM audio). Multi-channel audio is averaged to mono (the official code would take the first
channel; for mono input, the only kind it was trained on, both agree).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from unirep_errors import InputTooLargeError, UndecodableInputError, UnsupportedMediaTypeError

from .base import BaseAdapter, as_chw, check_finite, check_size, encode_png, gray_to_uint8
from .serving import ServingDefaults
from .training_augment import augment_waveform, spec_augment

__all__ = ["AudioAdapter", "AudioParams", "fbank_map", "official_fbank", "resampled_waveform"]

FFMPEG_TIMEOUT_S = 30.0
"""A decoder stuck on a hostile file is killed after this long (the service's pool limit applies as well)."""

_AUDIO_MAGICS: tuple[bytes, ...] = (
    b"RIFF",
    b"RF64",
    b"fLaC",
    b"OggS",
    b"ID3",
    b"FORM",
    b"caff",
    b".snd",
    b"\x1aE\xdf\xa3",
)


@dataclass(frozen=True)
class AudioParams:
    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_frames: int = 128
    norm_mean: float = -6.845978
    norm_std: float = 5.5654526

    def __post_init__(self) -> None:
        if not isinstance(self.sample_rate, int) or not 4000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample_rate must be an int in [4000, 192000], got {self.sample_rate!r}")
        if not isinstance(self.num_mel_bins, int) or not 8 <= self.num_mel_bins <= 512:
            raise ValueError(f"num_mel_bins must be an int in [8, 512], got {self.num_mel_bins!r}")
        if not isinstance(self.target_frames, int) or not 8 <= self.target_frames <= 65536:
            raise ValueError(f"target_frames must be an int in [8, 65536], got {self.target_frames!r}")
        if not float(self.norm_std) > 0:
            raise ValueError(f"norm_std must be positive, got {self.norm_std!r}")


class AudioAdapter(BaseAdapter[AudioParams]):
    """WAV (8/16/24/32-bit, float), FLAC, OGG, MP3 (+ whatever ffmpeg reads) -> 1 x num_mel_bins x target_frames."""

    name: ClassVar[str] = "audio"
    params_type: ClassVar[type[Any]] = AudioParams
    heavy_imports: ClassVar[tuple[str, ...]] = ("soundfile", "torchaudio", "torchaudio.compliance.kaldi")
    serving: ClassVar[ServingDefaults] = ServingDefaults(label_set="speech-commands-v2", in_chans=1)
    training_mixup: ClassVar[float] = 0.6  # the official speech-commands recipe mixes pairs of examples
    small_params: ClassVar[dict[str, Any]] = {"target_frames": 96, "num_mel_bins": 64}

    def output_shape(self, **params: Any) -> tuple[int, int, int]:
        p = self.resolve_params(**params)
        return (1, p.num_mel_bins, p.target_frames)

    def _decode(self, data: bytes, p: AudioParams) -> torch.Tensor:
        wave, rate = self.read_waveform(data)
        return official_fbank(wave, rate, p)

    def read_waveform(self, data: bytes) -> tuple[np.ndarray, int]:
        """Decode to a float32 mono waveform and its native sample rate, enforcing the duration limit."""
        try:
            wave, rate = self._read_soundfile(data)
        except (InputTooLargeError, UndecodableInputError):
            raise
        except Exception as sf_exc:
            wave, rate = self._read_ffmpeg(data, sf_exc)
        if wave.ndim != 2 or wave.shape[0] == 0:
            raise UndecodableInputError("audio has 0 samples; send at least 25 ms of sound")
        check_finite(wave, "audio")
        mono = wave.mean(axis=1, dtype=np.float64).astype(np.float32) if wave.shape[1] > 1 else wave[:, 0]
        return np.ascontiguousarray(mono), rate

    def _check_duration(self, frames: int, rate: int) -> None:
        if rate <= 0:
            raise UndecodableInputError(f"audio header declares sample rate {rate}")
        seconds = frames / rate
        if seconds > self.limits.max_audio_seconds:
            raise InputTooLargeError(
                f"audio is {seconds:.1f} s long; the limit is {self.limits.max_audio_seconds:g} s",
                seconds=round(seconds, 3),
                limit=self.limits.max_audio_seconds,
            )

    def _read_soundfile(self, data: bytes) -> tuple[np.ndarray, int]:
        import soundfile as sf

        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.channels <= 0 or f.channels > 64:
                raise UndecodableInputError(f"audio header declares {f.channels} channels")
            self._check_duration(f.frames, f.samplerate)
            wave = f.read(dtype="float32", always_2d=True)
            return wave, int(f.samplerate)

    def _read_ffmpeg(self, data: bytes, sf_exc: Exception) -> tuple[np.ndarray, int]:
        """Fallback decoder: ffmpeg writes 32-bit float WAV to a pipe, which soundfile then reads."""
        import soundfile as sf

        looks_like_audio = data.startswith(_AUDIO_MAGICS) or _has_mpeg_sync(data) or b"ftyp" in data[:16]
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise self._unreadable(looks_like_audio, f"soundfile: {sf_exc}")
        # Decode one second past the limit, so that "too long" is reported as such rather than truncated.
        max_s = self.limits.max_audio_seconds + 1.0
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-t", f"{max_s:g}"]
        cmd += ["-vn", "-map", "0:a:0", "-c:a", "pcm_f32le", "-f", "wav", "pipe:1"]
        try:
            proc = subprocess.run(cmd, input=data, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise UndecodableInputError(f"audio decoding timed out after {FFMPEG_TIMEOUT_S:g} s") from exc
        if proc.returncode != 0 or not proc.stdout:
            reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no audio stream"]
            raise self._unreadable(looks_like_audio, f"soundfile: {sf_exc}; ffmpeg: {reason[0]}")
        try:
            # ffmpeg cannot seek back into a pipe to fix the RIFF sizes, so read the header's rate and the rest raw.
            with sf.SoundFile(io.BytesIO(proc.stdout)) as f:
                rate, channels = int(f.samplerate), int(f.channels)
            offset = proc.stdout.find(b"data", 12) + 8
            raw = np.frombuffer(proc.stdout[offset : offset + (len(proc.stdout) - offset) // 4 * 4], dtype="<f4")
            wave = raw[: raw.size // channels * channels].reshape(-1, channels).copy()
        except Exception as exc:
            raise UndecodableInputError(f"audio decoded by ffmpeg is unreadable: {exc}") from exc
        self._check_duration(wave.shape[0], rate)
        return wave, rate

    @staticmethod
    def _unreadable(looks_like_audio: bool, reason: str) -> UndecodableInputError | UnsupportedMediaTypeError:
        if looks_like_audio:
            return UndecodableInputError(f"audio cannot be decoded (truncated or corrupt): {reason}")
        return UnsupportedMediaTypeError(
            "not a recognised audio format; send WAV, FLAC, OGG or MP3", supported=["wav", "flac", "ogg", "mp3"]
        )

    def preview(self, tensor: torch.Tensor, **params: Any) -> bytes:
        """The log-mel spectrogram, low frequencies at the bottom as people read spectrograms."""
        chw = as_chw(tensor, "audio")
        return encode_png(gray_to_uint8(chw[0])[::-1], min_side=256)

    # Training caches the waveform (resampled to the model's rate), not the map, so that augmentation can change
    # pitch and tempo before the filter bank; the un-augmented input runs the very code ``decode`` runs.

    def decode_for_training(self, data: bytes, **params: Any) -> torch.Tensor:
        p = self.resolve_params(**params)
        check_size(bytes(data), self.limits.max_bytes, self.name)
        wave, rate = self.read_waveform(bytes(data))
        return resampled_waveform(wave, rate, p)

    def training_input(self, cached: torch.Tensor, **params: Any) -> torch.Tensor:
        return fbank_map(cached, self.resolve_params(**params)).to(torch.float32).contiguous()

    def augment(self, cached: torch.Tensor, generator: torch.Generator, **params: Any) -> torch.Tensor:
        """Training only: pitch shift and time stretch of the waveform (each half of the time), the served filter
        bank, then SpecAugment frequency and time masks (mixup is applied per batch by the recipe)."""
        p = self.resolve_params(**params)
        wave = augment_waveform(cached, p.sample_rate, generator)
        return spec_augment(fbank_map(wave, p).to(torch.float32).contiguous(), generator)


def _has_mpeg_sync(data: bytes) -> bool:
    return len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0


def official_fbank(wave: np.ndarray, rate: int, p: AudioParams) -> torch.Tensor:
    """Mono waveform -> normalized 1 x mel x frames map, exactly as the official dataloader computes it."""
    return fbank_map(resampled_waveform(wave, rate, p), p)


def resampled_waveform(wave: np.ndarray, rate: int, p: AudioParams) -> torch.Tensor:
    """The 1 x samples float32 waveform at the model's sample rate, at least one 25 ms analysis frame long."""
    import torchaudio

    waveform = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).unsqueeze(0)
    if rate != p.sample_rate:
        waveform = torchaudio.functional.resample(waveform, rate, p.sample_rate)
    window = int(p.sample_rate * 0.025)  # kaldi's 25 ms frame
    if waveform.shape[1] < window:
        ms = 1000.0 * waveform.shape[1] / p.sample_rate
        raise UndecodableInputError(f"audio is {ms:.1f} ms long; need at least 25 ms (one analysis frame)")
    return waveform


def fbank_map(waveform: torch.Tensor, p: AudioParams) -> torch.Tensor:
    """1 x samples waveform at ``p.sample_rate`` -> the official kaldi filter bank, padded or cut, normalized."""
    import torchaudio

    waveform = waveform - waveform.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        waveform,
        htk_compat=True,
        sample_frequency=p.sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=p.num_mel_bins,
        dither=0.0,
        frame_shift=10,
    )
    n_frames = fbank.shape[0]
    if n_frames < p.target_frames:
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, p.target_frames - n_frames))
    else:
        fbank = fbank[: p.target_frames]
    fbank = (fbank - p.norm_mean) / (p.norm_std * 2)
    return fbank.transpose(0, 1).unsqueeze(0)
