"""The microphone source (PortAudio through sounddevice, imported only here and only when a
microphone is used, so the apps run on an install without the `audio` extra).

The device is opened at the model's rate when it accepts it, else at its own default rate
(typically 44.1 or 48 kHz) and resampled in the stream. PortAudio's callback thread only copies
each block into a bounded queue; the app's thread resamples, runs the model and prints.
Input overflows reported by PortAudio and blocks dropped because the queue was full are both
counted.

Glossary: L samples in a block.
"""

from __future__ import annotations

import logging
import queue
import time

from qs4d.runtime.errors import InputError

from .sources import Chunk, StreamResampler

log = logging.getLogger(__name__)


def _sd():
    try:
        import sounddevice  # noqa: TID251 (lazy: only the microphone source needs it)
    except OSError as e:  # the package is there, the PortAudio library is not
        raise InputError(f"microphone: PortAudio is not available ({e})") from None
    except ImportError:
        raise InputError("microphone: needs the optional package 'sounddevice' (pip install "
                         "'qs4d[audio]')") from None
    return sounddevice


def _no_audio(what: str, e: Exception) -> InputError:
    """A PortAudio failure (no device, a busy or vanished one) as one line."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return InputError(f"{what}: no usable audio input ({first}); see `qs4d kws "
                      f"--list-devices`")


def rescan_devices() -> None:
    """Make PortAudio enumerate the devices again (it does so once, at initialization; a
    sound server started after that is otherwise invisible)."""
    sd = _sd()
    sd._terminate()
    sd._initialize()


def parse_device(text: str | None):
    """--device value: an index ("3") or a name substring ("pulse"); None for the default."""
    if text is None or text == "":
        return None
    return int(text) if text.strip().isdigit() else text


def list_devices() -> str:
    """The input devices PortAudio sees, one per line, the default marked with '*'."""
    sd = _sd()
    try:
        devs = sd.query_devices()
    except sd.PortAudioError as e:
        raise _no_audio("list devices", e) from None
    try:
        default_in = sd.default.device[0]
    except (TypeError, IndexError):
        default_in = -1
    lines = []
    for i, d in enumerate(devs):
        if d["max_input_channels"] < 1:
            continue
        mark = "*" if i == default_in else " "
        lines.append(f"{mark} {i:>3}  {d['name']}  ({d['max_input_channels']} in, "
                     f"{d['default_samplerate']:.0f} Hz)")
    return "\n".join(lines) if lines else "no input devices found"


class MicSource:
    """Chunks of a live input device at `rate` (float32 mono).

    device: index or name (None: PortAudio's default input). device_rate: force a capture rate
    (None: `rate` if the device accepts it, else the device's default). max_seconds: stop after
    this much audio (None: until `stop()` or Ctrl-C).
    """

    def __init__(self, rate: int = 16000, device=None, chunk_ms: float = 100.0,
                 max_seconds: float | None = None, device_rate: int | None = None,
                 queue_blocks: int = 100):
        sd = _sd()
        self.rate, self.device, self.max_seconds = rate, device, max_seconds
        try:
            self.capture_rate = device_rate or self._pick_rate(sd, rate, device)
        except (sd.PortAudioError, ValueError) as e:
            raise _no_audio(f"mic:{device if device is not None else 'default'}", e) from None
        self.resampler = StreamResampler(self.capture_rate, rate)
        self.block = max(1, int(round(self.capture_rate * chunk_ms / 1000.0)))
        self.name = f"mic:{device if device is not None else 'default'}"
        self.overflows = 0  # PortAudio input overflows
        self.dropped_blocks = 0  # blocks lost because the app fell behind
        self._q: queue.Queue = queue.Queue(maxsize=queue_blocks)
        self._stop = False

    @staticmethod
    def _pick_rate(sd, rate: int, device) -> int:
        try:
            sd.check_input_settings(device=device, samplerate=rate, channels=1, dtype="float32")
            return rate
        except Exception as e:  # sounddevice raises PortAudioError or ValueError
            info = sd.query_devices(device, "input")
            native = int(round(info["default_samplerate"]))
            log.info("device does not take %d Hz (%s); capturing at %d Hz", rate, e, native)
            return native

    def _callback(self, indata, frames, time_info, status) -> None:
        if status.input_overflow:
            self.overflows += 1
        try:
            self._q.put_nowait((indata[:, 0].copy(), time.perf_counter()))
        except queue.Full:
            self.dropped_blocks += 1

    def stop(self) -> None:
        self._stop = True

    def __iter__(self):
        sd = _sd()
        n_out = 0
        limit = None if self.max_seconds is None else int(round(self.max_seconds * self.rate))
        try:
            stream = sd.InputStream(samplerate=self.capture_rate, blocksize=self.block,
                                    device=self.device, channels=1, dtype="float32",
                                    callback=self._callback)
        except (sd.PortAudioError, ValueError) as e:
            raise _no_audio(self.name, e) from None
        with stream:
            while not self._stop and (limit is None or n_out < limit):
                try:
                    x, wall = self._q.get(timeout=2.0)
                except queue.Empty:
                    if not stream.active:
                        raise InputError(f"{self.name}: the input stream stopped") from None
                    continue
                y = self.resampler.process(x)
                if limit is not None:
                    y = y[: limit - n_out]
                n_out += len(y)
                yield Chunk(y, n_out / self.rate, wall)
