package train

import (
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// tileInk counts the pixels of the tile (col, row) of a grid cols×rows of
// img that are near colour (r, g, b) (8-bit).
func tileInk(img image.Image, cols, rows, col, row int, r, g, b uint32) int {
	bd := img.Bounds()
	w, h := bd.Dx()/cols, bd.Dy()/rows
	n := 0
	for y := bd.Min.Y + row*h; y < bd.Min.Y+(row+1)*h; y++ {
		for x := bd.Min.X + col*w; x < bd.Min.X+(col+1)*w; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			d := func(a, b uint32) bool { return math.Abs(float64(a>>8)-float64(b)) < 40 }
			if d(pr, r) && d(pg, g) && d(pb, b) {
				n++
			}
		}
	}
	return n
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// loss.png with Panels: the loss and one plot per panel whose metrics
// were logged, two to a row; each panel's curves are drawn in its tile
// (first curve blue, second red), points only where the value changed;
// without Panels the plot is the loss alone, as before.
func TestPlotPanels(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, MetricsName)
	l, err := OpenMetrics(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	for s := 1; s <= 40; s++ {
		x := map[string]float64{"env/reward": float64(s) / 40, "objective/kl": 10 * (1 - math.Exp(-float64(s)/8)),
			"eval/reward": float64((s-1)/10) / 4}
		if err := l.Add(Progress{Step: s, Loss: 1 / float64(s), ValLoss: math.NaN(), Extra: x}); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.series("eval/reward", true); len(got) != 4 || got[1].X != 11 || got[3].Y != 0.75 {
		t.Errorf("points where eval/reward changes: %v", got)
	}
	if got := l.series("env/reward", false); len(got) != 40 {
		t.Errorf("line of env/reward: %d points", len(got))
	}
	plain := filepath.Join(dir, "plain.png")
	if err := l.Plot(plain); err != nil {
		t.Fatal(err)
	}
	l.Panels = []Panel{
		{Label: "reward", Lines: []string{"env/reward"}, Points: []string{"eval/reward"}},
		{Label: "KL", Lines: []string{"objective/kl"}, Refs: []float64{8}, RefLabel: "target"},
		{Label: "never logged", Lines: []string{"no/such"}},
	}
	panels := filepath.Join(dir, PlotName)
	if err := l.Plot(panels); err != nil {
		t.Fatal(err)
	}
	l.Close()
	p, q := readPNG(t, plain).Bounds(), readPNG(t, panels)
	if p.Dx() != 768 || p.Dy() != 480 {
		t.Errorf("loss alone: %v, want 8×5 inches at 96 dpi", p)
	}
	// loss, reward, KL (the panel without data is left out): 2×2 tiles
	if b := q.Bounds(); b.Dx() != 1248 || b.Dy() != 768 {
		t.Fatalf("with panels: %v, want 13×8 inches", b)
	}
	blue := func(c, r int) int { return tileInk(q, 2, 2, c, r, 0, 0, 200) }
	red := func(c, r int) int { return tileInk(q, 2, 2, c, r, 200, 0, 0) }
	if blue(1, 0) < 200 || red(1, 0) < 50 {
		t.Errorf("reward tile: %d blue, %d red pixels: want the line and the points", blue(1, 0), red(1, 0))
	}
	if blue(0, 1) < 200 || red(0, 1) > 0 {
		t.Errorf("KL tile: %d blue, %d red pixels: want one line", blue(0, 1), red(0, 1))
	}
	if n := blue(1, 1) + red(1, 1); n > 0 {
		t.Errorf("the fourth tile has %d coloured pixels: want it empty", n)
	}
}
