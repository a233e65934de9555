package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/train"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// herd's one recipe mechanism. A command that calls withRecipe gets
// --config FILE: a YAML mapping whose keys are the command's flag names
// (with _ or - between words), whose values set every flag not given on
// the command line (lists for repeatable or comma-separated flags). An
// unknown key is an error naming the key, the file and its line. The
// effective recipe, every flag's value after the file and the command
// line, is what recipeYAML returns: the commands print it at start and
// store it with their output, and it reads back as a --config.

// configFlag is the flag that names the recipe.
const configFlag = "config"

// notInRecipe are the flags a recipe neither sets nor records.
var notInRecipe = []string{configFlag, "help"}

// withRecipe adds --config to cmd and applies the recipe before cmd runs:
// the one call a command makes to take recipes.
func withRecipe(cmd *cobra.Command) *cobra.Command {
	cmd.Flags().String(configFlag, "", "YAML recipe: keys are the flag names (_ or - between words); flags given override it")
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if path, _ := c.Flags().GetString(configFlag); path != "" {
			if err := applyRecipe(c.Flags(), path); err != nil {
				return err
			}
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
	return cmd
}

// applyRecipe sets, from the YAML file at path, every flag of fs not given
// on the command line.
func applyRecipe(fs *pflag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("recipe: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("recipe %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // an empty file sets nothing
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("recipe %s:%d: want a mapping of flag names to values", path, top.Line)
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		name := strings.ReplaceAll(k.Value, "_", "-")
		fl := fs.Lookup(name)
		if fl == nil || slices.Contains(notInRecipe, name) {
			return fmt.Errorf("recipe %s:%d: unknown key %q (not a flag of this command)", path, k.Line, k.Value)
		}
		if fl.Changed {
			continue
		}
		if err := setFlag(fs, fl, v); err != nil {
			return fmt.Errorf("recipe %s:%d: %s: %w", path, v.Line, k.Value, err)
		}
	}
	return nil
}

// setFlag sets fl from a YAML value: a scalar, or a list for a flag that
// takes several values (each element set in turn for a repeatable flag,
// joined with commas for the others).
func setFlag(fs *pflag.FlagSet, fl *pflag.Flag, v *yaml.Node) error {
	switch v.Kind {
	case yaml.ScalarNode:
		return fs.Set(fl.Name, v.Value)
	case yaml.SequenceNode:
		var parts []string
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return fmt.Errorf("a list of plain values wanted")
			}
			parts = append(parts, e.Value)
		}
		if fl.Value.Type() == "stringArray" {
			for _, p := range parts {
				if err := fs.Set(fl.Name, p); err != nil {
					return err
				}
			}
			return nil
		}
		return fs.Set(fl.Name, strings.Join(parts, ","))
	}
	return fmt.Errorf("a value or a list wanted")
}

// recipeYAML is the effective recipe of fs: every flag but the deprecated
// aliases and notInRecipe, under its name with _ between words, in name
// order, as YAML a --config reads back.
func recipeYAML(fs *pflag.FlagSet) string {
	var buf bytes.Buffer
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Deprecated != "" || fl.Hidden || slices.Contains(notInRecipe, fl.Name) {
			return
		}
		node := recipeValue(fl)
		b, err := yaml.Marshal(map[string]*yaml.Node{strings.ReplaceAll(fl.Name, "-", "_"): node})
		if err != nil {
			fmt.Fprintf(&buf, "# %s: %v\n", fl.Name, err)
			return
		}
		buf.Write(b)
	})
	return buf.String()
}

// recipeValue is a flag's value as a YAML node of its type.
func recipeValue(fl *pflag.Flag) *yaml.Node {
	if sv, ok := fl.Value.(pflag.SliceValue); ok {
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, s := range sv.GetSlice() {
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: s})
		}
		return n
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: fl.Value.String(), Tag: "!!str"}
	switch fl.Value.Type() {
	case "bool":
		n.Tag = "!!bool"
	case "int", "int64", "int32", "uint", "uint64", "uint32", "count":
		n.Tag = "!!int"
	case "float64", "float32":
		n.Tag = "!!float"
	}
	return n
}

// writeRecipe stores a command's effective recipe as dir/recipe.yaml,
// atomically.
func writeRecipe(dir, recipe string) error {
	return fileio.WriteAtomic(filepath.Join(dir, train.RecipeName), func(w io.Writer) error {
		_, err := io.WriteString(w, recipe)
		return err
	})
}

// printRecipe writes the effective recipe of cmd, indented, after a
// "recipe:" line.
func printRecipe(w io.Writer, cmd *cobra.Command) {
	fmt.Fprintf(w, "recipe:\n")
	for _, line := range strings.Split(strings.TrimRight(recipeYAML(cmd.Flags()), "\n"), "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
}

// The flags every training command shares, under the same names.

// ctxFlags adds --ctx, the sequence length, and its deprecated alias
// --seq.
func ctxFlags(f *pflag.FlagSet, v *int, def int, usage string) {
	f.IntVar(v, "ctx", def, usage)
	f.IntVar(v, "seq", def, usage)
	f.MarkDeprecated("seq", "use --ctx")
}

// scheduleFlags adds --lr, --min-lr, --warmup and --schedule.
func scheduleFlags(f *pflag.FlagSet, lr, minLR *float64, warmup *int, kind *string, defLR, defMin float64, defWarmup int, minUsage string) {
	f.Float64Var(lr, "lr", defLR, "peak learning rate")
	f.Float64Var(minLR, "min-lr", defMin, minUsage)
	f.IntVar(warmup, "warmup", defWarmup, "linear warm-up steps")
	f.StringVar(kind, "schedule", "cosine", "learning-rate schedule after the warm-up: "+strings.Join(train.Schedules, ", "))
}

// optimFlags adds AdamW's --beta1, --beta2, --eps, --weight-decay and
// --decay-norms with the defaults of def.
func optimFlags(f *pflag.FlagSet, b1, b2, eps, wd *float64, decayNorms *bool, def train.Optim) {
	f.Float64Var(b1, "beta1", def.Beta1, "AdamW β1")
	f.Float64Var(b2, "beta2", def.Beta2, "AdamW β2")
	f.Float64Var(eps, "eps", def.Eps, "AdamW ε")
	f.Float64Var(wd, "weight-decay", def.WeightDecay, "AdamW decoupled weight decay (matrices only unless --decay-norms)")
	f.BoolVar(decayNorms, "decay-norms", false, "also decay the norm gains")
}

// quietFlags adds --quiet (-q), no progress bar and no periodic progress
// lines, and its deprecated alias --no-progress.
func quietFlags(f *pflag.FlagSet, v *bool) {
	f.BoolVarP(v, "quiet", "q", false, "no progress bar or progress lines")
	f.BoolVar(v, "no-progress", false, "no progress bar")
	f.MarkDeprecated("no-progress", "use --quiet")
}

// overlayFlags decodes onto dst, a struct read from a file of its own
// (data prepare's mixture), the flags of fs given on the command line or
// by --config, each under the YAML key keys names for it (dotted for a
// nested field); the flags it does not name are the command's own.
func overlayFlags(fs *pflag.FlagSet, keys map[string]string, dst any) error {
	over := map[string]any{}
	var err error
	fs.Visit(func(fl *pflag.Flag) {
		key, ok := keys[fl.Name]
		if !ok {
			return
		}
		m, parts := over, strings.Split(key, ".")
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = recipeValue(fl)
	})
	if len(over) == 0 {
		return nil
	}
	b, err := yaml.Marshal(over)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(b, dst); err != nil {
		return fmt.Errorf("flags over the recipe: %w", err)
	}
	return nil
}
