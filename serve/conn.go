package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Timeouts and the connection cap, as Config gives them (0: these).
const (
	DefaultHeaderTimeout = 10 * time.Second // to read a request's headers
	DefaultBodyTimeout   = 30 * time.Second // to read a request's body
	DefaultWriteTimeout  = 30 * time.Second // for one write of a response (each streamed event has its own)
	DefaultIdleTimeout   = 60 * time.Second // a keep-alive connection waits this long for its next request
	DefaultMaxConns      = 512              // connections open at once; more are answered 503 and closed
	// DefaultMaxTokens is the token budget of a request without max_tokens:
	// a model claiming a context of millions of positions would otherwise
	// write for hours.
	DefaultMaxTokens = 8192
)

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.HeaderTimeout, DefaultHeaderTimeout)
	set(&c.BodyTimeout, DefaultBodyTimeout)
	set(&c.WriteTimeout, DefaultWriteTimeout)
	set(&c.IdleTimeout, DefaultIdleTimeout)
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.DefaultMaxTokens == 0 {
		c.DefaultMaxTokens = DefaultMaxTokens
	}
}

// Serve answers connections from ln until ctx ends, then shuts down
// gracefully (waiting up to five seconds for requests in flight). It holds
// the server's limits: header, body, per-write and idle timeouts, and at
// most MaxConns connections at once (beyond them a connection gets a 503
// and is closed at once, so a storm of slow clients cannot take every
// file descriptor).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: s.cfg.HeaderTimeout, IdleTimeout: s.cfg.IdleTimeout,
		MaxHeaderBytes: 64 << 10, ErrorLog: nil}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(&limitListener{Listener: ln, max: int64(s.cfg.MaxConns), metrics: s.metrics}) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// limitListener accepts at most max connections at once; one beyond them
// is answered with a 503 and closed.
type limitListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	metrics *metrics
}

// busyResponse is what a connection beyond the cap reads before it is closed.
var busyResponse = func() string {
	body := `{"error":{"message":"too many open connections; retry later","type":"server_error","param":null,"code":"too_many_connections"}}` + "\n"
	return fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.metrics.refused()
		go func() {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, busyResponse)
			c.Close()
		}()
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// bodyWatch records whether a request's body was read to its end, so a
// request answered without reading it (a 401, a 405) is not drained: its
// connection closes instead of waiting on a client that sends slowly.
type bodyWatch struct {
	io.ReadCloser
	eof bool
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}
