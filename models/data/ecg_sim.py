"""An ECG simulator at 360 Hz (the MIT-BIH rate), beat by beat, labelled with AAMI classes.

Each beat is a sum of Gaussian waves (P, Q, R, S, T1, T2 and, for paced beats, a pacing spike),
in the style of McSharry's ECGSYN, rendered directly in time on lead MLII:

    ecg(t) = sum_beats sum_waves a_w * exp(-(t - t_beat - mu_w)^2 / (2 sigma_w^2))

A wave's in-lead amplitude is its vector magnitude projected on the lead axis (60 degrees for
MLII): a = m * cos(angle - 60), so the subject's electrical axis and an ectopic focus's
direction set the polarity. A subject (`Subject`) fixes heart rate and variability, ectopy
rates and rhythm episodes, morphology templates per beat kind and noise levels; `simulate`
draws one record from it, deterministic for the subject's seed.

Beat kinds: N sinus; S premature with an abnormal P (ectopic atrial focus), narrow QRS,
sinus reset; V premature, wide bizarre QRS, no P, discordant T, full compensatory pause;
F fusion, a per-beat blend of the N and V templates at sinus timing; Q paced (demand VVI
pacemaker: spike + wide QRS whenever the sinus rate drops below the pacing rate).

Glossary: L samples in a record, n beats, W waves. Times in seconds, amplitudes in mV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

from qs4d.runtime.ecg import AAMI_CLASSES

FS = 360
LEAD_ANGLE = 60.0  # MLII axis (degrees)
PROFILES = ("normal", "atrial", "ventricular", "fusion", "paced")
PROFILE_WEIGHTS = (0.25, 0.28, 0.27, 0.12, 0.08)
SYMBOLS = ("N", "A", "V", "F", "/")  # MIT-BIH beat symbol written for each AAMI class
RHYTHMS = ("(N", "(B", "(T", "(SVTA", "(VT", "(P")  # MIT-BIH rhythm notes, indexed by code
KIND_P, KIND_QRS, KIND_T, KIND_SPIKE = 0, 1, 2, 3
N_, S_, V_, F_, Q_ = (AAMI_CLASSES.index(c) for c in "NSVFQ")  # AAMI class indices


@dataclass(frozen=True)
class Subject:
    """One simulated patient. Templates are (W, 4) arrays of [amp mV, mu s, sigma s, kind]."""

    index: int
    profile: str
    seed: int
    rr0: float  # mean sinus RR (s)
    hrv: tuple  # (respiratory, 0.1 Hz, slow drift) relative RR modulation
    f_resp: float  # respiration (Hz): RSA, QRS amplitude modulation, baseline wander
    p_iso: tuple  # isolated S, V, F probability per sinus beat
    p_epi: tuple  # per-beat start probability of (bigeminy, trigeminy, S run, V run)
    epi_kind: int  # ectopic class of bigeminy / trigeminy episodes (S_ or V_)
    coupling: tuple  # (S, V) coupling interval / sinus RR
    pace_rr: float  # pacing interval (s); 0 without pacemaker
    n_wave: np.ndarray  # (W, 4) sinus beat
    s_p: tuple  # ectopic P (amplitude factor, offset s) of S beats
    v_waves: tuple  # (W, 4) per ventricular focus
    q_wave: np.ndarray  # (W, 4) paced beat (spike first); empty without pacemaker
    noise: tuple  # (baseline mV, EMG mV, mains mV, mains Hz, motion events per minute)


@dataclass(frozen=True)
class SimRecord:
    """One simulated record: signal (L,) float32 mV, per beat (n,) R sample and AAMI label."""

    subject: Subject
    fs: int
    signal: np.ndarray  # (L,) float32 mV
    r_peaks: np.ndarray  # (n,) int64 sample of each beat's fiducial (main QRS extremum)
    labels: np.ndarray  # (n,) int64 index into AAMI_CLASSES
    rhythm: np.ndarray  # (n,) int64 index into RHYTHMS

    @property
    def symbols(self) -> list[str]:
        return [SYMBOLS[k] for k in self.labels]


def _proj(mag: float, angle: float) -> float:
    return float(mag * np.cos(np.radians(angle - LEAD_ANGLE)))


def _direction(rng: np.random.Generator, mean: float, sd: float, min_proj: float) -> float:
    """A wave direction (degrees) whose projection on the lead is at least min_proj."""
    while True:
        a = rng.normal(mean, sd)
        if abs(np.cos(np.radians(a - LEAD_ANGLE))) >= min_proj:
            return a


def _sinus_template(rng: np.random.Generator, gain: float) -> np.ndarray:
    axis = float(np.clip(rng.normal(55, 25), -5, 105))
    w = rng.uniform(0.85, 1.25)  # QRS width factor
    r, t = gain * rng.uniform(0.9, 1.6), gain * rng.uniform(0.12, 0.35)
    qt = rng.uniform(0.24, 0.31)
    rows = [
        (_proj(rng.uniform(0.08, 0.25), rng.normal(55, 10)), -rng.uniform(0.15, 0.21),
         rng.uniform(0.018, 0.028), KIND_P),
        (_proj(gain * rng.uniform(0.04, 0.2), axis + 180 + rng.normal(0, 25)), -0.022 * w,
         0.008 * w, KIND_QRS),
        (_proj(r, axis), 0.0, 0.0095 * w, KIND_QRS),
        (_proj(gain * rng.uniform(0.1, 0.5), axis + 180 + rng.normal(-30, 20)), 0.024 * w,
         0.009 * w, KIND_QRS),
        (_proj(t, axis + rng.normal(0, 20)), qt - 0.03, 0.045, KIND_T),
        (_proj(0.6 * t, axis + rng.normal(0, 20)), qt + 0.02, 0.03, KIND_T),
    ]
    return np.array(rows)  # (6, 4)


def _wide_template(rng: np.random.Generator, gain: float, focus: float, spike: float) -> np.ndarray:
    """Wide bizarre QRS from `focus` (degrees), discordant T; a pacing spike if spike != 0."""
    m = gain * rng.uniform(1.2, 2.0)
    rows = [
        (_proj(m, focus), 0.0, rng.uniform(0.022, 0.034), KIND_QRS),
        (_proj(m * rng.uniform(0.2, 0.5), focus + 180), rng.choice([-1, 1]) * rng.uniform(0.03, 0.05),
         rng.uniform(0.015, 0.028), KIND_QRS),
        (_proj(m * rng.uniform(0.3, 0.6), focus + 180 + rng.normal(0, 15)), rng.uniform(0.27, 0.34),
         rng.uniform(0.06, 0.085), KIND_T),
    ]
    if spike:
        rows.insert(0, (spike, -rng.uniform(0.05, 0.07), 0.0018, KIND_SPIKE))
    return np.array(rows)  # (W, 4)


def _profile_rates(rng: np.random.Generator, profile: str) -> tuple[tuple, tuple, int]:
    """(isolated S, V, F), (bigeminy, trigeminy, S run, V run) per beat, episode class."""
    u = rng.uniform
    if profile == "atrial":
        return (u(0.25, 0.55), u(0, 0.01), 0.0), (u(0.004, 0.012), u(0, 0.006), u(0.004, 0.012),
                                                 0.0), S_
    if profile == "ventricular":
        return (u(0, 0.03), u(0.2, 0.45), u(0.03, 0.08)), (u(0.005, 0.015), u(0.004, 0.012), 0.0,
                                                            u(0, 0.004)), V_
    if profile == "fusion":
        return (u(0, 0.01), u(0.2, 0.35), u(0.45, 0.65)), (u(0, 0.004), 0.0, 0.0, u(0, 0.002)), V_
    if profile == "paced":
        return (0.0, u(0.02, 0.08), 0.0), (0.0, 0.0, 0.0, 0.0), V_
    return (u(0, 0.01), u(0, 0.01), 0.0), (0.0, 0.0, 0.0, 0.0), V_


def make_subject(index: int, profile: str, seed: int) -> Subject:
    """Draw one subject of `profile` (one of PROFILES), deterministic for (seed, index)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    rng = np.random.default_rng([seed, index, 17])
    u = rng.uniform
    gain = float(np.exp(rng.normal(0.0, 0.25))) * (-1.0 if rng.random() < 0.04 else 1.0)
    p_iso, p_epi, epi_kind = _profile_rates(rng, profile)
    n_foci = 2 if profile in ("ventricular", "fusion") and rng.random() < 0.3 else 1
    v_waves = tuple(_wide_template(rng, gain, _direction(rng, 0.0, 1e4, 0.55), 0.0)
                    for _ in range(n_foci))
    pace_rr = u(0.8, 1.0) if profile == "paced" else 0.0
    q_wave = (_wide_template(rng, gain, _direction(rng, -75, 20, 0.4),
                             rng.choice([-1, 1]) * u(0.6, 2.0)) if pace_rr else np.zeros((0, 4)))
    rr0 = pace_rr * u(0.9, 1.05) if pace_rr else 60.0 / float(np.clip(rng.normal(75, 12), 52, 105))
    mains = u(0.0, 0.03) if rng.random() < 0.6 else 0.0
    noise = (u(0.03, 0.3), float(np.exp(rng.normal(np.log(0.012), 0.6))), mains,
             float(rng.choice([50.0, 60.0])), u(0.0, 1.5))
    s_p = (float(rng.choice([u(-0.9, -0.3), u(0.2, 0.6)])), -u(0.10, 0.17))
    return Subject(index=index, profile=profile, seed=seed, rr0=float(rr0),
                   hrv=(u(0.01, 0.05), u(0.01, 0.04), u(0.02, 0.08)), f_resp=u(0.15, 0.4),
                   p_iso=p_iso, p_epi=p_epi, epi_kind=epi_kind,
                   coupling=(u(0.55, 0.8), u(0.5, 0.72)), pace_rr=float(pace_rr),
                   n_wave=_sinus_template(rng, gain), s_p=s_p, v_waves=v_waves, q_wave=q_wave,
                   noise=noise)


def make_cohort(n_subjects: int, seed: int = 0) -> list[Subject]:
    """n subjects with profiles in proportion to PROFILE_WEIGHTS (largest remainder)."""
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    quota = np.array(PROFILE_WEIGHTS) * n_subjects
    counts = np.floor(quota).astype(int)
    counts[np.argsort(counts - quota)[: n_subjects - counts.sum()]] += 1
    profiles = [p for p, c in zip(PROFILES, counts) for _ in range(c)]
    order = np.random.default_rng([seed, 1]).permutation(n_subjects)
    return [make_subject(i, profiles[j], seed) for i, j in enumerate(order)]


# ---------------------------------------------------------------------------------------------
# Rhythm: beat times and classes
# ---------------------------------------------------------------------------------------------

def _sinus_rr(subj: Subject, rng: np.random.Generator, duration: float):
    """Sinus RR (s) as a function of time: RSA, 0.1 Hz Mayer waves, slow drift."""
    a_r, a_lf, a_d = subj.hrv
    ph = rng.uniform(0, 2 * np.pi, 2)
    knots = np.arange(0.0, duration + 40.0, 20.0)
    drift = rng.normal(0.0, a_d, knots.size)
    if subj.pace_rr:  # wide drift so the demand pacemaker takes over in episodes
        drift = rng.normal(0.0, 0.08, knots.size)

    def rr(t: float) -> float:
        mod = a_r * np.sin(2 * np.pi * subj.f_resp * t + ph[0]) + a_lf * np.sin(0.2 * np.pi * t + ph[1])
        return float(subj.rr0 * (1 + mod) * np.exp(np.interp(t, knots, drift)))
    return rr


def _pattern(subj: Subject, rng: np.random.Generator) -> tuple[list, int]:
    """The next beats after a sinus beat: a list of classes and the rhythm code."""
    big, tri, srun, vrun = subj.p_epi
    x, u = subj.epi_kind, rng.random()
    if u < big:
        return [x, N_] * int(rng.integers(5, 30)), 1
    if u < big + tri:
        return [x, N_, N_] * int(rng.integers(5, 20)), 2
    if u < big + tri + srun:
        return [S_] * int(rng.integers(3, 9)), 3
    if u < big + tri + srun + vrun:
        return [V_] * int(rng.integers(3, 7)), 4
    ps, pv, pf = subj.p_iso
    u = rng.random()
    k = S_ if u < ps else V_ if u < ps + pv else F_ if u < ps + pv + pf else N_
    return [k], 0


def rhythm(subj: Subject, rng: np.random.Generator, duration: float):
    """Beat times (n,) s, classes (n,) and rhythm codes (n,) over [0, duration)."""
    rr_of = _sinus_rr(subj, rng, duration)
    times, kinds, codes = [], [], []
    t_prev, prev = 0.0, N_
    t_sin = rng.uniform(0.2, subj.rr0)
    queue: list = []
    code = 0
    while True:
        rr = rr_of(t_prev)
        if not queue:
            queue, code = _pattern(subj, rng) if prev == N_ else ([N_], 0)
        k = queue.pop(0)
        if k == N_ and subj.pace_rr and t_sin > t_prev + subj.pace_rr and times:
            k, t = Q_, t_prev + subj.pace_rr * (1 + rng.normal(0, 0.002))
            t_sin = t + rr
        elif k == N_:
            t = max(t_sin, t_prev + 0.3)
            t_sin = t + rr_of(t) * (1 + rng.normal(0, 0.01))
        elif k == S_:
            c = rng.uniform(0.3, 0.45) / rr if prev == S_ else subj.coupling[0] * rng.uniform(0.95, 1.05)
            t = t_prev + c * rr
            t_sin = t + rr * rng.uniform(1.0, 1.1)
        elif k == V_:
            c = rng.uniform(0.36, 0.5) / rr if prev == V_ else subj.coupling[1] * rng.uniform(0.97, 1.03)
            t = t_prev + c * rr
            while t_sin < t + 0.6 * rr:
                t_sin += rr
        else:  # F: a late-coupled ventricular beat meeting the sinus wavefront
            t = t_sin - rng.uniform(0.0, 0.04)
            t_sin += rr
        if t >= duration - 0.4:
            break
        times.append(t)
        kinds.append(k)
        codes.append(5 if k == Q_ else code)
        t_prev, prev = t, k
    return np.array(times), np.array(kinds, np.int64), np.array(codes, np.int64)


# ---------------------------------------------------------------------------------------------
# Morphology and rendering
# ---------------------------------------------------------------------------------------------

def _qrs_peak(w: np.ndarray) -> float:
    """Largest |QRS| of template rows w (W, 4), on a 2.8 ms grid over +-100 ms."""
    q = w[w[:, 3] == KIND_QRS]  # (Wq, 4)
    t = np.linspace(-0.1, 0.1, 73)  # (G,)
    return float(np.abs((q[:, :1] * np.exp(-0.5 * ((t - q[:, 1:2]) / q[:, 2:3]) ** 2)).sum(0)).max())


def _fusion(subj: Subject, rng: np.random.Generator) -> np.ndarray:
    """A fusion beat: a per-beat blend of the sinus and ventricular templates (W, 4), the
    ventricular wavefront a little earlier; never smaller than 0.6 of the smaller of the two."""
    a = rng.uniform(0.3, 0.7)
    n, v = subj.n_wave.copy(), subj.v_waves[0].copy()
    n[n[:, 3] != KIND_P, 0] *= 1 - a
    v[:, 0] *= a
    v[:, 1] -= rng.uniform(0.01, 0.03)
    w = np.concatenate([n, v])
    floor = 0.6 * min(_qrs_peak(subj.n_wave), _qrs_peak(subj.v_waves[0]))
    peak = _qrs_peak(w)
    if peak < floor:  # opposite polarities cancelled: keep the fused QRS visible
        w[w[:, 3] == KIND_QRS, 0] *= floor / peak
    return w


def _beat_waves(subj: Subject, rng: np.random.Generator, t: np.ndarray, k: np.ndarray):
    """All waves of all beats as rows [amp, centre time, sigma, kind] (W, 4)."""
    rr_prev = np.clip(np.diff(t, prepend=t[0] - subj.rr0), 0.3, 2.0)  # (n,)
    m_resp = rng.uniform(0.02, 0.1)
    ph = rng.uniform(0, 2 * np.pi)
    focus = rng.random(len(t)) < 0.3  # second focus of multiform ectopy
    out = []
    for i in range(len(t)):
        if k[i] == V_:
            w = subj.v_waves[int(focus[i]) % len(subj.v_waves)].copy()
        elif k[i] == Q_:
            w = subj.q_wave.copy()
        elif k[i] == F_:
            w = _fusion(subj, rng)
        else:
            w = subj.n_wave.copy()
            if k[i] == S_:
                w[0, 0] *= subj.s_p[0]
                w[0, 1] = subj.s_p[1]
        w[:, 0] *= 1 + 0.04 * rng.standard_normal(len(w))
        qrs = w[:, 3] == KIND_QRS
        w[qrs, 0] *= 1 + m_resp * np.sin(2 * np.pi * subj.f_resp * t[i] + ph)
        tw = w[:, 3] == KIND_T
        w[tw, 1:3] *= np.sqrt(rr_prev[i]) if k[i] in (N_, S_, F_) else rr_prev[i] ** 0.25
        w[:, 1] += t[i]
        out.append(w)
    return np.concatenate(out) if out else np.zeros((0, 4))  # (W, 4)


def render(waves: np.ndarray, n_samples: int, fs: int) -> np.ndarray:
    """Sum of Gaussians on the sample grid, each wave cut at 5 sigma; (L,) float64."""
    out = np.zeros(n_samples)
    half = int(np.ceil(5 * waves[:, 2].max() * fs)) if len(waves) else 0
    offs = np.arange(-half, half + 1)  # (S,)
    for lo in range(0, len(waves), 2048):
        a, mu, sg = waves[lo: lo + 2048, :3].T  # (W,) each
        idx = np.rint(mu * fs).astype(np.int64)[:, None] + offs  # (W, S)
        val = a[:, None] * np.exp(-0.5 * ((idx / fs - mu[:, None]) / sg[:, None]) ** 2)  # (W, S)
        ok = (idx >= 0) & (idx < n_samples)
        out += np.bincount(idx[ok], weights=val[ok], minlength=n_samples)
    return out


def _fiducials(clean: np.ndarray, times: np.ndarray, fs: int) -> np.ndarray:
    """Each beat's main QRS extremum: argmax |clean| within 50 ms of its nominal time."""
    h = int(0.05 * fs)
    c = np.clip(np.rint(times * fs).astype(np.int64), h, len(clean) - h - 1)  # (n,)
    win = c[:, None] + np.arange(-h, h + 1)  # (n, 2h+1)
    return c - h + np.argmax(np.abs(clean[win]), axis=1)


def _lowpass_noise(rng: np.random.Generator, n: int, fs: int, f_hi: float, f_lo: float = 0.0):
    """Unit-variance Gaussian noise band-limited to [f_lo, f_hi] Hz; (n,) float64."""
    sos = butter(2, [f_lo, f_hi] if f_lo else f_hi, "bandpass" if f_lo else "lowpass",
                 fs=fs, output="sos")
    x = sosfilt(sos, rng.standard_normal(n + 2 * fs))[2 * fs:]  # (n,)
    return x / max(x.std(), 1e-12)


def noise(subj: Subject, rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Baseline wander, EMG (bursty), mains and electrode motion artefacts; (n,) float64 mV."""
    bw, emg, mains, f_mains, motion = subj.noise
    t = np.arange(n) / fs  # (n,)
    x = bw * (0.7 * np.sin(2 * np.pi * subj.f_resp * t + rng.uniform(0, 6.3))
              + 0.7 * _lowpass_noise(rng, n, fs, 0.2))
    envelope = 1.0 + 1.5 * np.maximum(_lowpass_noise(rng, n, fs, 0.3), 0.0)
    x += emg * envelope * _lowpass_noise(rng, n, fs, 120.0, 20.0)
    ph = rng.uniform(0, 2 * np.pi)
    x += mains * (np.sin(2 * np.pi * f_mains * t + ph) + 0.2 * np.sin(6 * np.pi * f_mains * t))
    for _ in range(rng.poisson(motion * n / fs / 60.0)):
        d = int(rng.uniform(0.4, 2.0) * fs)
        s = int(rng.integers(0, max(1, n - d)))
        burst = _lowpass_noise(rng, d, fs, 4.0) * np.hanning(d) * rng.uniform(0.1, 0.5)
        if rng.random() < 0.3:  # electrode pop: step with exponential recovery
            burst += rng.uniform(-0.5, 0.5) * np.exp(-np.arange(d) / (rng.uniform(0.3, 1.0) * fs))
        x[s: s + d] += burst[: n - s]
    return x


def simulate(subj: Subject, minutes: float, fs: int = FS) -> SimRecord:
    """One record of `minutes` from `subj`; deterministic for (subject seed, index, minutes)."""
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    rng = np.random.default_rng([subj.seed, subj.index, 29])
    n = int(round(minutes * 60 * fs))
    times, kinds, codes = rhythm(subj, rng, n / fs)
    waves = _beat_waves(subj, rng, times, kinds)
    clean = render(waves[waves[:, 3] != KIND_SPIKE], n, fs)  # (L,)
    r = _fiducials(clean, times, fs)
    spikes = waves[waves[:, 3] == KIND_SPIKE]
    x = clean + (render(spikes, n, fs) if len(spikes) else 0.0) + noise(subj, rng, n, fs)
    x = np.clip(x, -10.0, 10.0).astype(np.float32)  # (L,) the recorder's range
    return SimRecord(subject=subj, fs=fs, signal=x, r_peaks=r, labels=kinds, rhythm=codes)
