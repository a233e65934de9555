package chat

import (
	"testing"
)

// TestForModel: the template policy of herd run, chat and serve.
func TestForModel(t *testing.T) {
	for _, tc := range []struct {
		path, name, want string
	}{
		{"", "", "raw"},                                                  // the embedded model has no template
		{"", "vicuna_v1.1", "vicuna_v1.1"},                               // a built-in name
		{"../assets/stories260K.bin", "", "raw"},                         // not a GGUF file
		{"../format/gguf/testdata/stories260K-llamacpp.gguf", "", "raw"}, // a GGUF file without chat_template
	} {
		tp, err := ForModel(tc.path, tc.name)
		if err != nil || tp.Name != tc.want {
			t.Errorf("ForModel(%q, %q) = %v, %v; want %s", tc.path, tc.name, tp, err, tc.want)
		}
	}
	tp, err := ForModel("", "testdata/tokenizer_config.json")
	if err != nil || tp.Origin != "Jinja chat_template" {
		t.Errorf("tokenizer_config.json: %+v, %v", tp, err)
	}
	if _, err := ForModel("", "nope"); err == nil {
		t.Error("an unknown template name was accepted")
	}
}
