// Package serve is herd's OpenAI-compatible HTTP server: chat completions,
// completions (both streamed with server-sent events or not), embeddings and
// the model list under /v1, continuous batching through a
// generate.Scheduler per model, Prometheus metrics at /metrics, a health
// check at /health and a single-page web chat at /.
package serve

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
)

// Model is a model the server offers under Name.
type Model struct {
	Name     string
	Model    *llama.Model
	Tok      tokenizer.Tokenizer
	Template *chat.Template
	Sched    *generate.Scheduler
	Created  time.Time
}

// Config is the server's configuration.
type Config struct {
	// APIKey, when set, is required as "Authorization: Bearer KEY" on every
	// /v1 route.
	APIKey string
	// MaxBodyBytes caps request bodies (default 8 MiB).
	MaxBodyBytes int64
	// Log receives one structured record per request (default: discard).
	Log *slog.Logger
	// HeaderTimeout, BodyTimeout, WriteTimeout and IdleTimeout bound how
	// long a client may take to send a request's headers and its body, to
	// take one write of the response (each streamed event has its own, so a
	// stream may last as long as its generation), and to send its next
	// request on a kept-alive connection; MaxConns caps the connections
	// open at once. Serve applies them; 0 takes the Default… constants.
	HeaderTimeout, BodyTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxConns                                              int
	// DefaultMaxTokens is the token budget of a request that names none
	// (default DefaultMaxTokens; negative: the context's rest, however
	// large the file claims it to be). The answer then ends with
	// finish_reason "length" if it gets that far.
	DefaultMaxTokens int
}

// Server is the HTTP handler. Create it with New.
type Server struct {
	cfg     Config
	models  map[string]*Model
	names   []string
	mux     *http.ServeMux
	metrics *metrics
}

// New returns a server for models (their names must be distinct).
func New(cfg Config, models ...*Model) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 8 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.defaults()
	s := &Server{cfg: cfg, models: map[string]*Model{}, mux: http.NewServeMux(), metrics: newMetrics()}
	for _, m := range models {
		if m.Name == "" {
			return nil, fmt.Errorf("a model has no name")
		}
		if _, dup := s.models[m.Name]; dup {
			return nil, fmt.Errorf("two models are named %q; name them with MODEL=NAME", m.Name)
		}
		if m.Created.IsZero() {
			m.Created = time.Now()
		}
		s.models[m.Name] = m
		s.names = append(s.names, m.Name)
	}
	if len(s.models) == 0 {
		return nil, fmt.Errorf("no models to serve")
	}
	sort.Strings(s.names)
	s.route("/v1/chat/completions", http.MethodPost, s.chatCompletions)
	s.route("/v1/completions", http.MethodPost, s.completions)
	s.route("/v1/embeddings", http.MethodPost, s.embeddings)
	s.route("/v1/models", http.MethodGet, s.listModels)
	s.route("/v1/models/{id}", http.MethodGet, s.getModel)
	s.route("/v1/", "", func(w http.ResponseWriter, r *http.Request, _ *reqLog) {
		writeError(w, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Message: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
	})
	s.route("/health", http.MethodGet, s.health)
	s.route("/metrics", http.MethodGet, s.serveMetrics)
	s.route("/{$}", http.MethodGet, serveIndex)
	return s, nil
}

// ServeHTTP answers a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// reqLog collects what the request log records.
type reqLog struct {
	model             string
	status            int
	prompt, generated int
	ttft              time.Duration
	finish            string
}

// statusWriter records the status written, gives every write its own
// deadline, and closes the connection after a response to a request whose
// body was not read to its end (rather than draining a slow client's).
type statusWriter struct {
	http.ResponseWriter
	status  int
	rc      *http.ResponseController
	timeout time.Duration // for each write
	body    *bodyWatch    // nil when the request has no body
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		if w.body != nil && !w.body.eof {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// route registers a handler with the method check, authentication, body
// limit, metrics and the request log around it.
func (s *Server) route(pattern, method string, h func(http.ResponseWriter, *http.Request, *reqLog)) {
	endpoint := strings.TrimSuffix(pattern, "/{$}")
	if endpoint == "" {
		endpoint = "/"
	}
	s.mux.HandleFunc(pattern, func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rc := http.NewResponseController(rw)
		w := &statusWriter{ResponseWriter: rw, rc: rc, timeout: s.cfg.WriteTimeout}
		if r.Body != nil && r.Body != http.NoBody {
			w.body = &bodyWatch{ReadCloser: r.Body}
			r.Body = w.body
			rc.SetReadDeadline(start.Add(s.cfg.BodyTimeout))
		}
		rl := &reqLog{}
		defer func() {
			if p := recover(); p != nil {
				s.cfg.Log.Error("handler panicked", "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				if w.status == 0 {
					writeError(w, &apiError{Status: http.StatusInternalServerError, Type: "server_error", Message: "internal error"})
				}
			}
			if w.body != nil && !w.body.eof {
				// the server reads up to 256 KiB of an unread body after the
				// handler, to reuse the connection: grant a second for that
				// (an honest client's body in flight), not the body timeout
				// a slow client would hold the connection for
				rc.SetReadDeadline(time.Now().Add(min(time.Second, s.cfg.BodyTimeout)))
			}
			if w.status == 0 {
				w.status = http.StatusOK
			}
			s.metrics.request(endpoint, rl.model, w.status)
			s.cfg.Log.Info("request", "method", r.Method, "path", r.URL.Path, "status", w.status, "model", rl.model,
				"prompt_tokens", rl.prompt, "completion_tokens", rl.generated, "finish", rl.finish,
				"ttft_ms", rl.ttft.Milliseconds(), "duration_ms", time.Since(start).Milliseconds(), "remote", r.RemoteAddr)
		}()
		if strings.HasPrefix(r.URL.Path, "/v1/") && s.cfg.APIKey != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.APIKey)) != 1 {
				writeError(w, &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key",
					Message: "missing or incorrect API key: send Authorization: Bearer KEY"})
				return
			}
		}
		if method != "" && r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error",
				Message: fmt.Sprintf("%s takes %s, not %s", r.URL.Path, method, r.Method)})
			return
		}
		r.Body = http.MaxBytesReader(rw, r.Body, s.cfg.MaxBodyBytes)
		h(w, r, rl)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, map[string]any{"error": e})
}

// body reads the request body within the size limit and the body timeout,
// then lifts the read deadline (a streamed answer may take longer).
func (s *Server) body(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &tooBig):
			return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error",
				Message: fmt.Sprintf("the request body exceeds the limit of %d bytes", tooBig.Limit)}
		case errors.As(err, &ne) && ne.Timeout():
			return nil, &apiError{Status: http.StatusRequestTimeout, Type: "invalid_request_error",
				Message: fmt.Sprintf("the request body did not arrive within %s", s.cfg.BodyTimeout)}
		}
		return nil, invalid("", "reading the request body: %v", err)
	}
	http.NewResponseController(w).SetReadDeadline(time.Time{})
	return b, nil
}

// model finds a model by name; a name is only ever looked up, never opened.
func (s *Server) model(name string) (*Model, *apiError) {
	if m, ok := s.models[name]; ok {
		return m, nil
	}
	return nil, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Param: "model", Code: "model_not_found",
		Message: fmt.Sprintf("the model %q does not exist (served: %s)", name, strings.Join(s.names, ", "))}
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func (s *Server) health(w http.ResponseWriter, r *http.Request, _ *reqLog) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "models": s.names})
}

type modelInfo struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *Server) info(m *Model) modelInfo {
	return modelInfo{ID: m.Name, Object: "model", Created: m.Created.Unix(), OwnedBy: "herd"}
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request, _ *reqLog) {
	data := make([]modelInfo, 0, len(s.names))
	for _, n := range s.names {
		data = append(data, s.info(s.models[n]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (s *Server) getModel(w http.ResponseWriter, r *http.Request, rl *reqLog) {
	m, e := s.model(r.PathValue("id"))
	if e != nil {
		writeError(w, e)
		return
	}
	rl.model = m.Name
	writeJSON(w, http.StatusOK, s.info(m))
}
