"""Media probing and full decoding with PyAV (no shell, any container/codec ffmpeg reads)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

HASH_CHUNK = 1 << 20


class MediaError(Exception):
    """A file that cannot be used as a clip; the message says why, for a person."""


@dataclass
class MediaInfo:
    """What a clip holds, as its header claims and as it actually decodes."""

    size_bytes: int
    container: str
    claimed_duration_s: float | None
    has_video: bool
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    n_frames: int = 0
    video_decoded_s: float = 0.0
    has_audio: bool = False
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    audio_decoded_s: float = 0.0
    decode_errors: int = 0
    # decoding stopped here (seconds) because a stream ran past ``probe_media``'s ``stop_after_s``
    stopped_at_s: float | None = None

    @property
    def decoded_duration_s(self) -> float:
        return max(self.video_decoded_s, self.audio_decoded_s)

    def as_dict(self) -> dict:
        return asdict(self)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def probe_media(
    path: Path | str, decode: bool = True, stop_after_s: float | None = None
) -> MediaInfo:
    """Read a clip's streams and, with ``decode``, decode every packet to measure what is there.

    With ``stop_after_s``, decoding stops as soon as any stream has decoded more than that many
    seconds (``stopped_at_s`` says so): a header that understates the duration cannot make a
    long stream decode to its end. Raises MediaError when the file is empty or not media at all.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise MediaError("empty file (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(f"not a readable media file ({_ffmpeg_reason(exc)})") from exc

    with container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        claimed = container.duration / av.time_base if container.duration else None
        info = MediaInfo(
            size_bytes=size,
            container=container.format.name,
            claimed_duration_s=claimed,
            has_video=video is not None,
            has_audio=audio is not None,
        )
        if video is not None:
            info.video_codec = video.codec_context.name
            info.width, info.height = video.codec_context.width, video.codec_context.height
            rate = video.average_rate or video.guessed_rate
            info.fps = float(rate) if rate else None
        if audio is not None:
            info.audio_codec = audio.codec_context.name
            info.sample_rate = audio.codec_context.sample_rate
            info.channels = audio.codec_context.channels
        if decode and (video is not None or audio is not None):
            _decode_all(container, video, audio, info, stop_after_s)
    return info


@dataclass
class _Tally:
    """What has decoded so far: the video's last frame time and the audio's samples."""

    first: float  # the video's start time
    frame_s: float
    rate: int  # audio sample rate (0: no audio)
    video_end: float = 0.0
    samples: int = 0

    @property
    def video_s(self) -> float:
        return max(0.0, self.video_end - self.first + self.frame_s)

    @property
    def audio_s(self) -> float:
        return self.samples / self.rate if self.rate else 0.0

    def add(self, frames, is_video: bool, info: MediaInfo) -> None:
        for frame in frames:
            if frame.pts is None or frame.time_base is None:
                continue
            if is_video:
                info.n_frames += 1
                self.video_end = max(self.video_end, float(frame.pts * frame.time_base))
            else:
                self.samples += frame.samples


def decode_packets(container, *streams, damage: list | None = None) -> Iterator[tuple]:
    """``(stream, frames)`` per demuxed packet of ``streams``, with validate's tolerance, which
    every stage that decodes shares: a packet that does not decode is skipped, and demuxing
    stops quietly at damage (a truncated file): what decoded so far is what the clip holds.
    Each skipped packet or stop appends its error to ``damage``."""
    try:
        for packet in container.demux(*streams):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as exc:
                if damage is not None:
                    damage.append(exc)
                continue
            yield packet.stream, frames
    except av.error.FFmpegError as exc:
        if damage is not None:
            damage.append(exc)


def decode_frames(container, stream, damage: list | None = None) -> Iterator:
    """The frames of one stream, decoded as :func:`decode_packets` does."""
    for _, frames in decode_packets(container, stream, damage=damage):
        yield from frames


def _decode_all(container, video, audio, info: MediaInfo, stop_after_s: float | None) -> None:
    streams = [s for s in (video, audio) if s is not None]
    if video is not None:
        video.thread_type = "AUTO"
    first = float(video.start_time * video.time_base) if video and video.start_time else 0.0
    tally = _Tally(
        first,
        1.0 / info.fps if info.fps else 0.0,
        audio.codec_context.sample_rate or 0 if audio is not None else 0,
        first,
    )
    damage: list = []
    for stream, frames in decode_packets(container, *streams, damage=damage):
        tally.add(frames, stream is video, info)
        if stop_after_s is not None and max(tally.video_s, tally.audio_s) > stop_after_s:
            info.stopped_at_s = stop_after_s
            break
    info.decode_errors = len(damage)
    if video is not None and info.n_frames:
        info.video_decoded_s = tally.video_s
    info.audio_decoded_s = tally.audio_s


def _ffmpeg_reason(exc: Exception) -> str:
    message = getattr(exc, "strerror", None) or str(exc)
    return message.split(":")[0].strip() if message else type(exc).__name__


def write_video(
    path: Path | str,
    frames,
    fps: int,
    size: tuple[int, int],
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
) -> None:
    """Encode BGR frames (H.264) and optional mono float audio (AAC) into an MP4.

    Audio is interleaved with the video by time; ``+faststart`` puts the index first, as
    camera uploads usually have it. Single-threaded encoders keep the bytes deterministic.
    """
    width, height = size
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.options = {"preset": "ultrafast", "crf": "26", "threads": "1"}
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate, layout="mono")
            sound.codec_context.options = {"threads": "1"}
        written = 0  # audio samples sent so far
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            container.mux(video.encode(frame))
            if sound is not None:
                until = min(len(audio), int((index + 1) * sample_rate / fps))
                written = _mux_audio(container, sound, audio, written, until, sample_rate)
        container.mux(video.encode())
        if sound is not None:
            _mux_audio(container, sound, audio, written, len(audio), sample_rate)
            container.mux(sound.encode())


def _mux_audio(container, stream, audio, start: int, stop: int, sample_rate: int) -> int:
    if stop <= start:
        return start
    chunk = (np.clip(audio[start:stop], -1, 1) * 32767).astype(np.int16)[None, :]
    frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = start
    frame.time_base = Fraction(1, sample_rate)
    container.mux(stream.encode(frame))
    return stop


def write_audio(path: Path | str, audio: np.ndarray, sample_rate: int, out_rate: int = 16000):
    """Encode mono float audio to MP3 (or any format the suffix names) at ``out_rate``."""
    path = Path(path)
    codec = {".mp3": "libmp3lame", ".wav": "pcm_s16le", ".m4a": "aac"}[path.suffix.lower()]
    resampler = av.AudioResampler(
        format="s16p" if codec == "libmp3lame" else "s16", layout="mono", rate=out_rate
    )
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=out_rate, layout="mono")
        samples = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = sample_rate
        for resampled in resampler.resample(frame) + resampler.resample(None):
            container.mux(stream.encode(resampled))
        container.mux(stream.encode())
