package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/data"
	"github.com/herd-llm/herd/train"
	"github.com/spf13/cobra"
)

// testCmd is a command with a flag of each kind, taking recipes.
func testCmd(ran *bool) (*cobra.Command, *struct {
	lr    float64
	steps int
	name  string
	tags  []string
	on    bool
	ctx   int
}) {
	v := &struct {
		lr    float64
		steps int
		name  string
		tags  []string
		on    bool
		ctx   int
	}{}
	cmd := &cobra.Command{Use: "t", RunE: func(*cobra.Command, []string) error { *ran = true; return nil }}
	f := cmd.Flags()
	f.Float64Var(&v.lr, "lr", 1e-3, "")
	f.IntVar(&v.steps, "steps", 10, "")
	f.StringVar(&v.name, "run-name", "x", "")
	f.StringSliceVar(&v.tags, "tags", []string{"a"}, "")
	f.BoolVar(&v.on, "pack", false, "")
	ctxFlags(f, &v.ctx, 5, "")
	return withRecipe(cmd), v
}

// A recipe sets the flags not given (keys with _ or -, lists for slices,
// the deprecated --seq), the command line overrides it, the effective
// recipe reads back as the same settings, and an unknown key is an error
// naming the key, the file and its line.
func TestRecipeMechanism(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.yaml")
	os.WriteFile(path, []byte("lr: 0.5\nsteps: 3\nrun_name: from-file\ntags: [p, q]\npack: true\nseq: 64\n"), 0o644)
	var ran bool
	cmd, v := testCmd(&ran)
	cmd.SetArgs([]string{"--config", path, "--steps", "7"})
	if err := cmd.Execute(); err != nil || !ran {
		t.Fatal(err)
	}
	if v.lr != 0.5 || v.steps != 7 || v.name != "from-file" || strings.Join(v.tags, ",") != "p,q" || !v.on || v.ctx != 64 {
		t.Fatalf("%+v", *v)
	}
	eff := recipeYAML(cmd.Flags())
	for _, want := range []string{"lr: 0.5\n", "steps: 7\n", "run_name: from-file\n", "tags: [p, q]\n", "pack: true\n", "ctx: 64\n"} {
		if !strings.Contains(eff, want) {
			t.Errorf("effective recipe lacks %q:\n%s", want, eff)
		}
	}
	if strings.Contains(eff, "seq") || strings.Contains(eff, "config") {
		t.Errorf("the effective recipe records an alias or --config:\n%s", eff)
	}
	back := filepath.Join(dir, "back.yaml")
	os.WriteFile(back, []byte(eff), 0o644)
	cmd2, v2 := testCmd(&ran)
	cmd2.SetArgs([]string{"--config", back})
	if err := cmd2.Execute(); err != nil {
		t.Fatal(err)
	}
	if v2.lr != v.lr || v2.steps != v.steps || v2.name != v.name || strings.Join(v2.tags, ",") != strings.Join(v.tags, ",") || v2.on != v.on || v2.ctx != v.ctx {
		t.Errorf("read back %+v, want %+v", *v2, *v)
	}
	os.WriteFile(path, []byte("lr: 0.5\n\nlearning_rate: 1\n"), 0o644)
	cmd3, _ := testCmd(&ran)
	cmd3.SetArgs([]string{"--config", path})
	if err := cmd3.Execute(); err == nil || !strings.Contains(err.Error(), "learning_rate") || !strings.Contains(err.Error(), "r.yaml:3") {
		t.Errorf("unknown key: %v", err)
	}
	os.WriteFile(path, []byte("steps: many\n"), 0o644)
	cmd4, _ := testCmd(&ran)
	cmd4.SetArgs([]string{"--config", path})
	if err := cmd4.Execute(); err == nil || !strings.Contains(err.Error(), "steps") {
		t.Errorf("a bad value: %v", err)
	}
}

// The data prepare flags given override a mixture recipe's settings and
// leave the others as the recipe has them.
func TestOverlayFlags(t *testing.T) {
	cmd := dataPrepareCmd()
	if err := cmd.ParseFlags([]string{"--near-dedup", "0.7", "--scripts", "Latin,Han", "-t", "3"}); err != nil {
		t.Fatal(err)
	}
	r := data.Recipe{ValFraction: 0.1, Clean: data.Clean{MinChars: 50, NearDedup: 0.9}}
	if err := overlayFlags(cmd.Flags(), dataRecipeKeys, &r); err != nil {
		t.Fatal(err)
	}
	if r.ValFraction != 0.1 || r.Clean.MinChars != 50 || r.Clean.NearDedup != 0.7 || strings.Join(r.Clean.Scripts, ",") != "Latin,Han" || r.Workers != 3 {
		t.Errorf("%+v", r)
	}
	for name := range dataRecipeKeys {
		if cmd.Flags().Lookup(name) == nil {
			t.Errorf("dataRecipeKeys names %q, not a flag", name)
		}
	}
}

// The recipe herd pretrain stores in its checkpoints (train.Recipe's YAML)
// has only keys that are herd pretrain flags, so it reads back as a
// --config; the deprecated spellings seq and out still load.
func TestPretrainRecipeKeysAreFlags(t *testing.T) {
	r := train.Defaults()
	r.Preset, r.Data, r.Out = "stories260k", "d", "o"
	path := filepath.Join(t.TempDir(), "r.yaml")
	os.WriteFile(path, []byte(r.YAML()), 0o644)
	cmd := pretrainCmd()
	if err := applyRecipe(cmd.Flags(), path); err != nil {
		t.Fatalf("%v\n%s", err, r.YAML())
	}
	if got, _ := cmd.Flags().GetString("output"); got != "o" {
		t.Errorf("output %q", got)
	}
	os.WriteFile(path, []byte("preset: stories260k\nseq: 32\nout: x\n"), 0o644)
	old, err := train.LoadRecipe(path)
	if err != nil || old.Seq != 32 || old.Out != "x" {
		t.Errorf("deprecated keys: %+v, %v", old, err)
	}
}

// herd data prepare prints its effective recipe and stores it beside the
// manifest; it reads back as --config.
func TestDataPrepareStoresRecipe(t *testing.T) {
	out := filepath.Join(t.TempDir(), "data")
	_, se, err := herd(t, "", "data", "prepare", storiesText, "--split", "paragraph", "--val-fraction", "0.25", "-o", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, se)
	}
	b, err := os.ReadFile(filepath.Join(out, "recipe.yaml"))
	if err != nil || !strings.Contains(string(b), "val_fraction: 0.25\n") || !strings.Contains(se, "  val_fraction: 0.25\n") {
		t.Fatalf("recipe.yaml %q (%v); log:\n%s", b, err, se)
	}
	cmd := dataPrepareCmd()
	if err := applyRecipe(cmd.Flags(), filepath.Join(out, "recipe.yaml")); err != nil {
		t.Error(err)
	}
}
