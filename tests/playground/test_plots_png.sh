#!/usr/bin/env bash
# dpt plot rendered to PNG: six runs as a user compares them (sgd, adam, adamw and lion at their
# default rates a decade apart under a cosine schedule; a second sgd at lr 1 that diverges; an
# adam run that crashed and resumed, writing steps twice with its clock restarted), named with
# --label, drawn by dpt plot and rendered by rsvg-convert (librsvg2-bin). Checks every PNG is a
# real picture of its SVG's size with the runs' colours in it, and what the plots promise: the
# lr axis is logarithmic, the loss axis is not squashed by the diverged run, which the legend
# names, labels are unique, and the resumed run is drawn once per step, forwards in time.
# The PNGs stay in WORKDIR/plots to look at. Usage: test_plots_png.sh DPT WORKDIR
set -u
dpt=$1; work=$2
py=/usr/bin/python3
fail() { echo "FAIL: $*"; exit 1; }
command -v rsvg-convert >/dev/null || {
  echo "SKIP: rsvg-convert not installed (Debian: librsvg2-bin; launch/install-deps.sh test)"
  exit 77
}
rm -rf "$work"; mkdir -p "$work"; cd "$work" || exit 1

# --- six metrics files, as report.c writes them ---
$py - <<'PY' || fail "could not write the metrics files"
import json, math, os, random
random.seed(7)
STEPS, EPOCH = 600, 150
def write(path, label, lr0, loss_at, steps=STEPS, resume=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        def run():
            f.write(json.dumps({"type": "run", "label": label, "ranks": 2}) + "\n")
        def step(s, t):
            lr = lr0 * 0.5 * (1 + math.cos(math.pi * (s - 1) / STEPS))
            loss = loss_at(s) * math.exp(random.gauss(0, 0.15))
            f.write(json.dumps({"type": "step", "step": s, "loss": loss, "lr": lr,
                                "time": round(t, 4)}) + "\n")
            if s % EPOCH == 0:
                acc = 0.9 - 0.5 * loss_at(s) / loss_at(1)
                f.write(json.dumps({"type": "epoch", "step": s, "test_accuracy": acc,
                                    "test_loss": loss_at(s), "time": round(t + 0.15, 4)}) + "\n")
        run()
        crash, back = resume or (steps, steps)
        for s in range(1, crash + 1):
            step(s, 0.02 * s + 0.2 * (s // EPOCH))  # an evaluation takes 0.2 s
        if resume:  # restarts from the checkpoint of step `back`, clock at 0
            run()
            for s in range(back + 1, steps + 1):
                step(s, 0.5 + 0.02 * (s - back))
decay = lambda rate, floor: (lambda s: floor + (2.3 - floor) * math.exp(-s / rate))
write("runs/sgd/metrics.jsonl", "sgd", 1e-2, decay(250, 0.45))
write("runs/adam/metrics.jsonl", "adam", 1e-3, decay(60, 0.25))
write("runs/adamw/metrics.jsonl", "adamw", 1e-3, decay(70, 0.27))
write("runs/lion/metrics.jsonl", "lion", 1e-4, decay(120, 0.35))
write("runs/sgd_lr1/metrics.jsonl", "sgd", 1.0, lambda s: 2.3 * 10 ** (s / 15), steps=75)
write("runs/resumed/metrics.jsonl", "adam-resumed", 1e-3, decay(65, 0.2), resume=(420, 300))
PY

# --- dpt plot, --label per file ---
"$dpt" plot --out plots --label sgd --label adam --label adamw --label lion --label sgd \
  --label "adam (resumed)" runs/sgd/metrics.jsonl runs/adam/metrics.jsonl \
  runs/adamw/metrics.jsonl runs/lion/metrics.jsonl runs/sgd_lr1/metrics.jsonl \
  runs/resumed/metrics.jsonl > plot.out 2>&1 || { cat plot.out; fail "dpt plot"; }
"$dpt" plot --out x --label a --label b runs/sgd/metrics.jsonl > extra.out 2>&1
[ $? -eq 2 ] && grep -q -- "--label given 2 times for 1 metrics file" extra.out \
  || { cat extra.out; fail "more labels than files is not a usage error"; }

# --- render ---
for f in plots/*.svg; do
  rsvg-convert -o "${f%.svg}.png" "$f" 2> "${f%.svg}.rsvg.err" \
    || { cat "${f%.svg}.rsvg.err"; fail "rsvg-convert $f"; }
done

# --- check the pictures and what they show ---
$py - plots <<'PY' || fail "the plots are not what they promise"
import collections, re, struct, sys, zlib
d = sys.argv[1]
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]

def png(path):
    """(width, height, Counter of (r, g, b) pixels) of an 8-bit RGB or RGBA PNG."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path + ": not a PNG"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype = hdr[:4]
    assert depth == 8 and ctype in (2, 6), f"{path}: PNG type {depth}/{ctype}"
    bpp = 4 if ctype == 6 else 3
    raw, stride = zlib.decompress(idat), w * bpp
    prev, counts = bytearray(stride), collections.Counter()
    for y in range(h):
        ft, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ft == 2:
            line = bytearray((x + b) & 255 for x, b in zip(line, prev))
        elif ft:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                if ft == 1: line[i] = (line[i] + a) & 255
                elif ft == 3: line[i] = (line[i] + (a + b) // 2) & 255
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        counts.update(zip(line[0::bpp], line[1::bpp], line[2::bpp]))
        prev = line
    return w, h, counts

def near(px, hexcol, tol=40):
    r, g, b = (int(hexcol[i:i + 2], 16) for i in (1, 3, 5))
    return abs(px[0] - r) + abs(px[1] - g) + abs(px[2] - b) <= tol

charts = ["loss_step", "loss_time", "accuracy_step", "accuracy_time", "lr_step"]
for name in charts:
    svg = open(f"{d}/{name}.svg").read()
    sw, sh = (int(v) for v in re.search(r'<svg[^>]* width="(\d+)" height="(\d+)"', svg).groups())
    w, h, counts = png(f"{d}/{name}.png")
    assert (w, h) == (sw, sh), f"{name}.png is {w}x{h}, its SVG {sw}x{sh}"
    ink = 1 - counts[(255, 255, 255)] / (w * h)
    colours = len(counts)
    assert 0.02 < ink < 0.6 and colours > 50, f"{name}.png: {ink:.1%} ink, {colours} colours"
    # every run's line is on the picture in its colour; the diverged run (5th) leaves the plot
    # early and has no test accuracy: of it at least its legend entry; a run whose legend says
    # it is under another one ("same as") is not looked for
    legend = re.findall(r'<g class="legend-entry">.*?<text[^>]*>([^<]*)', svg)
    for k, col in enumerate(PALETTE[:6]):
        if "(same as" in legend[k]:
            continue
        n = sum(c for p, c in counts.items() if near(p, col))
        want = 20 if k == 4 else 100
        assert n >= want, f"{name}.png: run {k + 1}'s colour {col} on {n} pixels only"
    print(f"ok {name}.png {w}x{h}, {ink:.1%} ink, {colours} colours")

def yticks(name):
    return [t for t in re.findall(r'class="ytick"[^>]*>([^<]*)<', open(f"{d}/{name}.svg").read())]
lr = yticks("lr_step")  # a log axis: every tick positive, 1e-4 (lion) to 1 (sgd #2) and more
lrv = [float(t) for t in lr]
assert min(lrv) > 0 and max(lrv) / min(lrv) >= 1e4, f"lr axis not logarithmic: {lr}"
loss = [float(t) for t in yticks("loss_step")]
assert max(loss) <= 5, f"the diverged run squashes the loss axis: ticks {loss}"
for name in charts:
    svg = open(f"{d}/{name}.svg").read()
    labels = re.findall(r'<g class="legend-entry">.*?<text[^>]*>([^<]*)', svg)
    assert len(labels) == 6 and len(set(labels)) == 6, f"{name}: legend {labels}"
    assert "sgd #2 (diverged)" in labels and "adam (resumed)" in labels, f"{name}: {labels}"
# the resumed run: one point per step, forwards in time (loss_time has it as its 6th series)
for name in ("loss_step", "loss_time"):
    svg = open(f"{d}/{name}.svg").read()
    paths = re.findall(r'<g class="series"[^>]*>\s*<path class="line" d="([^"]*)"', svg)
    xs = [float(v) for v in re.findall(r"[ML ]?([-\d.]+) [-\d.]+", paths[5])]
    assert all(b >= a for a, b in zip(xs, xs[1:])), f"{name}: the resumed run goes backwards"
print("lr ticks", "|".join(lr), "; loss ticks", "|".join(yticks("loss_step")))
PY
echo ok
