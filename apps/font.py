"""A 3x5 pixel bitmap font for plot labels (no font files, no dependencies).

Each glyph is five rows, top to bottom; each row a digit 0-7 whose bits 4, 2, 1 are the left,
middle and right pixel. Lower case is drawn as upper case; an unknown character as '?'.
"""

from __future__ import annotations

import numpy as np

GLYPHS = {
    "0": "75557", "1": "26227", "2": "71747", "3": "71717", "4": "55711",
    "5": "74717", "6": "74757", "7": "71111", "8": "75757", "9": "75717",
    "A": "25755", "B": "65656", "C": "34443", "D": "65556", "E": "74647",
    "F": "74644", "G": "34553", "H": "55755", "I": "72227", "J": "11152",
    "K": "55655", "L": "44447", "M": "57755", "N": "57775", "O": "25552",
    "P": "65644", "Q": "75571", "R": "65655", "S": "34216", "T": "72222",
    "U": "55557", "V": "55552", "W": "55775", "X": "55255", "Y": "55222",
    "Z": "71247", " ": "00000", ".": "00002", ",": "00024", "-": "00700",
    ":": "02020", "/": "11244", "%": "51245", "(": "24442", ")": "21112",
    "_": "00007", "+": "02720", "=": "07070", "?": "71202", "[": "64446",
    "]": "31113", "<": "12421", ">": "42124", "#": "57575", "*": "05250",
    "'": "22000", "|": "22222", "^": "25000",
}
WIDTH, HEIGHT = 3, 5


def glyph(ch: str) -> np.ndarray:
    """(5, 3) bool pixels of one character."""
    rows = GLYPHS.get(ch.upper(), GLYPHS["?"])
    bits = np.array([int(r) for r in rows])  # (5,)
    return (bits[:, None] & np.array([4, 2, 1])[None, :]) > 0  # (5, 3)


def render(text: str) -> np.ndarray:
    """(5, 4 * len(text) - 1) bool pixels of a line of text (one blank column between)."""
    if not text:
        return np.zeros((HEIGHT, 0), bool)
    cols = []
    for i, ch in enumerate(text):
        if i:
            cols.append(np.zeros((HEIGHT, 1), bool))
        cols.append(glyph(ch))
    return np.concatenate(cols, axis=1)
