package serve

import (
	_ "embed"
	"net/http"
)

// indexHTML is the web chat: one page, inline CSS and JavaScript, no
// external assets. It lists the models, streams replies from
// /v1/chat/completions, stops a reply on request and keeps the
// conversation in the page.
//
//go:embed web/index.html
var indexHTML []byte

func serveIndex(w http.ResponseWriter, r *http.Request, _ *reqLog) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(indexHTML)
}
