"""The MIT-BIH Arrhythmia Database's record lists and beat classes (numpy-free constants).

AAMI EC57 beat classes: N (normal and bundle-branch block beats: N, L, R, e, j), S
(supraventricular ectopic: A, a, J, S), V (ventricular ectopic: V, E), F (fusion of V and N),
Q (paced and unclassifiable: /, f, Q). Every other annotation (rhythm, noise, comments) is not
a beat.

Inter-patient split (de Chazal, O'Dwyer and Reilly, IEEE TBME 51(7), 2004): DS1 to train, DS2
to test, 22 records each; the paced records 102, 104, 107 and 217 are in neither. qs4d holds
four DS1 records out for validation (`DS1_VALIDATION`): patients the training never sees, used
to choose recipes; DS2 is only ever used to report a shipped model.
"""

from __future__ import annotations

AAMI_OF_SYMBOL = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("aAJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
       "201", "203", "205", "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
       "213", "214", "219", "221", "222", "228", "231", "232", "233", "234")
PACED = ("102", "104", "107", "217")
# Chosen by beat counts alone, so that validation has S and V beats: 118 (S 96), 119 (V 444),
# 201 (S 128, V 198), 101 (almost all N); training keeps the other 18 DS1 records.
DS1_VALIDATION = ("101", "118", "119", "201")
DS1_TRAIN = tuple(n for n in DS1 if n not in DS1_VALIDATION)
SPLITS = {"DS1": DS1, "DS2": DS2, "train": DS1_TRAIN, "validation": DS1_VALIDATION, "test": DS2}


def mitbih_split(split: str) -> tuple:
    """Record names of 'DS1' or 'DS2', or of the training splits 'train' (DS1 less its
    validation records), 'validation' (DS1_VALIDATION) and 'test' (DS2)."""
    if split not in SPLITS:
        raise ValueError(f"MIT-BIH split: one of {list(SPLITS)}, got {split!r}")
    return SPLITS[split]
