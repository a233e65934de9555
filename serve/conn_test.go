package serve

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startServe runs s.Serve on 127.0.0.1 and returns its address.
func startServe(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// TestRejectedBodyNotDrained: a request refused before its body is read
// (a 401 here) is answered and its connection closed within a second,
// not held for the body timeout while a slow client trickles the body in
// (issue 21, item 5).
func TestRejectedBodyNotDrained(t *testing.T) {
	s, _ := newTestServer(t, "secret", 1)
	s.cfg.BodyTimeout = time.Minute
	addr := startServe(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"mo")
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading: %v (after %s)", err, time.Since(start))
	}
	if !strings.Contains(string(b), "401") || !strings.Contains(string(b), "Connection: close") {
		t.Errorf("answer %q", b)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the connection stayed open %s", d)
	}
}

// TestIdleAndBodyTimeouts: a kept-alive connection is closed after the idle
// timeout, and a body that does not arrive within the body timeout gets a
// 408.
func TestIdleAndBodyTimeouts(t *testing.T) {
	s, _ := newTestServer(t, "", 1)
	s.cfg.IdleTimeout, s.cfg.BodyTimeout = 300*time.Millisecond, 300*time.Millisecond
	addr := startServe(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle connection closed after %s", d)
	}
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c2)
	if !strings.Contains(string(b), "408") || !strings.Contains(string(b), "did not arrive") {
		t.Errorf("slow body: %q", b)
	}
}
