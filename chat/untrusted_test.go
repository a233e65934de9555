package chat

import (
	"strings"
	"testing"
	"time"
)

// TestHostileTemplates: templates from model files are untrusted (issue
// 21, item 4). One that exceeds the rendering limits on any conversation
// is refused at load with a clear error; one that does so only on long
// conversations fails the render of those; nothing crashes or hangs.
func TestHostileTemplates(t *testing.T) {
	v := Vocab{BOS: "<s>", EOS: "</s>", AddBOS: true}
	for name, src := range map[string]string{
		"string bomb":     "{{ 'a' * 3000000000 }}",
		"huge range":      "{% for i in range(200000000) %}x{% endfor %}",
		"recursive macro": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
		"nested loops":    "{% for i in range(3000) %}{% for j in range(3000) %}{% for k in range(3000) %}{% endfor %}{% endfor %}{% endfor %}",
	} {
		start := time.Now()
		_, err := FromJinja(name, src, v)
		if err == nil || !strings.Contains(err.Error(), "exceeds the rendering limits") || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: load took %s", name, d)
		}
	}
	// quadratic in the conversation: fine for four messages, too much for 300
	src := "{% for m in messages %}{% for n in messages %}{% for o in messages %}{% for p in range(20) %}{% endfor %}{% endfor %}{% endfor %}{{ m.content }}{% endfor %}"
	tp, err := FromJinja("cubic", src, v)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []Message
	for i := 0; i < 300; i++ {
		msgs = append(msgs, Message{Role: []string{User, Assistant}[i%2], Content: "x"})
	}
	if _, err := tp.Render(msgs, true); err == nil || !strings.Contains(err.Error(), "steps") && !strings.Contains(err.Error(), "runs longer than") {
		t.Errorf("a conversation beyond the limits: %v", err)
	}
	if _, err := tp.Render(msgs[:3], true); err != nil {
		t.Errorf("a short conversation: %v", err)
	}
	// a parse error names the template and the line
	if _, err := FromJinja("broken", "line one\n{% if x %}", v); err == nil || !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "endif") {
		t.Errorf("broken template: %v", err)
	}
}
