// Package recipe reads YAML recipe files strictly into Go structs: the one
// reader behind train.LoadRecipe and data.LoadRecipe (the command line's
// flag recipes are cmd/herd's --config, whose keys are the flag names and
// which match these files' keys).
package recipe

import (
	"bytes"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// Load decodes the YAML file at path over v (a pointer to a struct already
// holding the defaults). An unknown key is an error naming the file and
// the line; aliases renames top-level keys first (old spellings kept for
// a release: "seq" → "ctx").
func Load(path string, v any, aliases map[string]string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("recipe: %w", err)
	}
	return Decode(path, b, v, aliases)
}

// Decode is Load of the bytes b, named path in errors.
func Decode(path string, b []byte, v any, aliases map[string]string) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("recipe %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	top, renamed := doc.Content[0], false
	if top.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(top.Content); i += 2 {
			if to, ok := aliases[top.Content[i].Value]; ok {
				top.Content[i].Value, renamed = to, true
			}
		}
	}
	if renamed { // the file with the keys renamed (its lines may move)
		var err error
		if b, err = yaml.Marshal(&doc); err != nil {
			return fmt.Errorf("recipe %s: %w", path, err)
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("recipe %s: %w", path, err)
	}
	return nil
}
