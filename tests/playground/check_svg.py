#!/usr/bin/python3
"""check_svg.py DIR: checks every .svg under DIR (recursively) is a standalone SVG chart.

Each file must parse as XML, have an <svg> root in the SVG namespace with numeric width and
height and a four-number viewBox, carry only finite numbers in the geometry of its paths,
polylines, lines, circles, rects and texts, and refer to nothing outside itself (no scripts,
images, links or external url()). A leftover temporary file (*.svg.tmp) is an error, and so is a
DIR with no .svg at all: the check must not pass by checking nothing. Exit status 0 = all good.
"""
import math
import os
import re
import sys
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
# numbers each path command takes
ARITY = {"M": 2, "L": 2, "T": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "A": 7, "Z": 0}
GEOMETRY = {"line": ("x1", "y1", "x2", "y2"), "circle": ("cx", "cy", "r"),
            "rect": ("x", "y", "width", "height"), "text": ("x", "y")}
FORBIDDEN = {"script", "image", "foreignObject", "use", "a", "style"}


def number(s, what):
    try:
        v = float(s)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: not a number: {s!r}")
    if not math.isfinite(v):
        raise ValueError(f"{what}: not finite: {s!r}")
    return v


def check_path(d, what):
    tokens = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[A-Za-z]+|[^\s,]+", d)
    if not tokens or tokens[0] not in "Mm":
        raise ValueError(f"{what}: path does not start with a moveto: {d[:40]!r}")
    cmd, args = None, 0
    for t in tokens + ["Z"]:
        if len(t) == 1 and t.isalpha():
            n = ARITY.get(cmd, 0)
            if cmd is not None and ((n == 0 and args) or (n and (args == 0 or args % n))):
                raise ValueError(f"{what}: {args} numbers after '{cmd}'")
            if t.upper() not in ARITY:
                raise ValueError(f"{what}: unknown path command {t!r}")
            cmd, args = t.upper(), 0
        else:
            number(t, what)
            args += 1


def check_file(path):
    root = ET.parse(path).getroot()
    if root.tag != SVG + "svg":
        raise ValueError(f"root is {root.tag}, not {SVG}svg")
    w = number(root.get("width"), "width")
    h = number(root.get("height"), "height")
    vb = (root.get("viewBox") or "").replace(",", " ").split()
    if len(vb) != 4:
        raise ValueError(f"viewBox {root.get('viewBox')!r} is not four numbers")
    vb = [number(v, "viewBox") for v in vb]
    if w <= 0 or h <= 0 or vb[2] <= 0 or vb[3] <= 0:
        raise ValueError("empty canvas")
    shapes = 0
    for el in root.iter():
        tag = el.tag[len(SVG):] if el.tag.startswith(SVG) else el.tag
        what = f"<{tag}>"
        if not el.tag.startswith(SVG) or tag in FORBIDDEN:
            raise ValueError(f"{what}: not allowed in a standalone chart")
        for k, v in el.attrib.items():
            if k.endswith("href") or re.search(r"url\((?!#)", v):
                raise ValueError(f"{what}: external reference {k}={v!r}")
        if tag == "path":
            check_path(el.get("d", ""), what)
            shapes += 1
        elif tag == "polyline" or tag == "polygon":
            pts = (el.get("points") or "").replace(",", " ").split()
            if not pts or len(pts) % 2:
                raise ValueError(f"{what}: points must be x,y pairs")
            for p in pts:
                number(p, what)
            shapes += 1
        for a in GEOMETRY.get(tag, ()):
            if el.get(a) is not None:
                number(el.get(a), f"{what} {a}")
    return shapes


def main(argv):
    if len(argv) != 2:
        print("usage: check_svg.py DIR", file=sys.stderr)
        return 2
    files, bad = [], 0
    for d, _, names in os.walk(argv[1]):
        for n in sorted(names):
            if n.endswith(".svg.tmp"):
                print(f"FAIL {os.path.join(d, n)}: temporary file left behind")
                bad += 1
            elif n.endswith(".svg"):
                files.append(os.path.join(d, n))
    if not files:
        print(f"FAIL no .svg files under {argv[1]}")
        return 1
    for f in sorted(files):
        try:
            shapes = check_file(f)
            print(f"ok   {f} ({shapes} paths)")
        except (ET.ParseError, ValueError) as e:
            print(f"FAIL {f}: {e}")
            bad += 1
    print(f"{len(files) - bad} of {len(files)} SVG files valid" if not bad else f"{bad} failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
