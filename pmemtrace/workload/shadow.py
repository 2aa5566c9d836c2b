"""The shadow of a scenario run: what every byte the worker wrote must read
back as, per 4 KiB page of the file or device, so corruption (a stale PMD,
a lost write) is found by comparing, not guessed."""

from . import engine as E
from .scenario import PAGE


class Shadow:
    """Per 4 KiB page of the file/device: a fill (None unknown, 'zero', or a
    pattern seed) plus single words written by touch loops."""

    def __init__(self):
        self.pages = {}
        self.limit = None  # file size: words past it are not checked

    def _page(self, pos):
        return self.pages.setdefault(pos & ~(PAGE - 1), [None, {}])

    def fill(self, start, length, seed):
        for p in range(start & ~(PAGE - 1), start + length, PAGE):
            self.pages[p] = [seed, {}]

    def word(self, pos, seed):
        self._page(pos)[1][pos & ~7] = seed

    def expected_word(self, pos):
        pg = self.pages.get(pos & ~(PAGE - 1))
        if pg is None:
            return None
        fill, words = pg
        if (pos & ~7) in words:
            return E.pattern(words[pos & ~7], pos & ~7)
        if fill == "zero":
            return 0
        if fill is None:
            return None
        return E.pattern(fill, pos & ~7)

    def check_page(self, pos, data):
        """Offsets (absolute) of bad words in one page's bytes; [] when fine."""
        fill, words = self.pages.get(pos, [None, {}])
        bad = []
        if self.limit is not None and pos + PAGE > self.limit:
            keep = max(0, (self.limit - pos) & ~7)
            data = bytes(data[:keep]) + bytes(PAGE - keep)
            words = {w: s for w, s in words.items() if w + 8 <= self.limit}
            if fill not in (None, "zero"):
                # past EOF: expect the zeros we padded with
                head = E.check_bytes(data[:keep], fill, pos) if keep else None
                bad += [] if head is None else [pos + head]
                fill = None
        for wpos, seed in words.items():
            o = wpos - pos
            if int.from_bytes(data[o : o + 8], "little") != E.pattern(seed, wpos):
                bad.append(wpos)
        if fill is None:
            return bad
        buf = bytearray(data)
        for wpos, _seed in words.items():  # mask the words checked above
            o = wpos - pos
            v = 0 if fill == "zero" else E.pattern(fill, wpos)
            buf[o : o + 8] = v.to_bytes(8, "little")
        if fill == "zero":
            if any(buf):
                first = next(i for i, b in enumerate(buf) if b)
                bad.append(pos + (first & ~7))
        else:
            first = E.check_bytes(bytes(buf), fill, pos)
            if first is not None:
                bad.append(pos + first)
        return bad
