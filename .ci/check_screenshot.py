"""Checks that a PNG screenshot of the dashboard is a real picture: not blank, and
the charts drawn (their line colours present). Standard library only: the PNG is
decoded here (8-bit RGB or RGBA, non-interlaced, as Chromium writes it).

usage: python3 check_screenshot.py screenshot.png
"""

import struct
import sys
import zlib


def decode(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour not in (2, 6) or interlace != 0:
                sys.exit(f"{path}: unexpected PNG format (depth {depth}, colour {colour})")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        rows.append(line)
        prev = line
    return width, height, channels, rows


def main():
    path = sys.argv[1]
    width, height, channels, rows = decode(path)
    total = width * height
    inked, colours = 0, set()
    for line in rows:
        for x in range(0, width * channels, channels):
            r, g, b = line[x], line[x + 1], line[x + 2]
            if min(r, g, b) < 235:
                inked += 1
            colours.add((r >> 4, g >> 4, b >> 4))
    # The chart colours: the first series' blue and the limit lines' red.
    blue = (0x1F >> 4, 0x77 >> 4, 0xB4 >> 4)
    red = (0xD6 >> 4, 0x27 >> 4, 0x28 >> 4)
    share = inked / total
    print(
        f"{path}: {width}x{height}, {share:.1%} inked, {len(colours)} colours, "
        f"chart blue {'found' if blue in colours else 'missing'}, "
        f"limit red {'found' if red in colours else 'missing'}"
    )
    if share < 0.02:
        sys.exit("the screenshot is blank")
    if len(colours) < 8 or blue not in colours or red not in colours:
        sys.exit("the charts are not drawn")


if __name__ == "__main__":
    main()
