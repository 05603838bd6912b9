package plugin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brindle-net/brindle/cni/wire"
	"github.com/containernetworking/cni/pkg/types"
)

// rawAgent answers every connection on a unix socket with answer (after
// reading the request head and body); it records the last request.
func rawAgent(t *testing.T, answer func(req *http.Request, body []byte) string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bcnic")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				body, _ := io.ReadAll(req.Body)
				if a := answer(req, body); a != "" {
					io.WriteString(c, a)
				} else {
					time.Sleep(2 * time.Second) // never answers in time
				}
			}()
		}
	}()
	return sock
}

// TestClient: the hand-rolled HTTP/1.0 exchange against answers a Go
// net/http server gives (with and without Content-Length), service
// errors, garbage, silence and no agent at all.
func TestClient(t *testing.T) {
	tests := []struct {
		name     string
		answer   string // "" = never answer
		noAgent  bool
		wantIP   string
		wantCode uint
		wantErr  string
	}{
		{name: "content-length", answer: "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n{\"ips\":[\"1.2.3.4\"]}", wantIP: "1.2.3.4"},
		{name: "close-delimited", answer: "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"ips\":[\"1.2.3.5\"]}\n", wantIP: "1.2.3.5"},
		{name: "service error", answer: "HTTP/1.0 503 Service Unavailable\r\n\r\n{\"code\":11,\"msg\":\"add: policy not programmed\",\"details\":\"timeout\"}",
			wantCode: 11, wantErr: "add: policy not programmed"},
		{name: "not a service error", answer: "HTTP/1.0 502 Bad Gateway\r\n\r\n<html>", wantCode: types.ErrInternal, wantErr: "502 Bad Gateway"},
		{name: "garbage", answer: "SSH-2.0-OpenSSH\r\n\r\n", wantCode: types.ErrTryAgainLater, wantErr: "bad status line"},
		{name: "short body", answer: "HTTP/1.0 200 OK\r\nContent-Length: 50\r\n\r\n{}", wantCode: types.ErrTryAgainLater, wantErr: "read answer"},
		{name: "silence", answer: "", wantCode: types.ErrTryAgainLater, wantErr: "did not answer /v1/cni/add in time"},
		{name: "no agent", noAgent: true, wantCode: types.ErrTryAgainLater, wantErr: "brindle agent is not running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotReq *http.Request
			var gotBody []byte
			sock := filepath.Join(t.TempDir(), "none.sock")
			if !tt.noAgent {
				sock = rawAgent(t, func(r *http.Request, b []byte) string {
					gotReq, gotBody = r, b
					return tt.answer
				})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			var resp wire.AddResponse
			err := newClient(sock).call(ctx, wire.PathAdd, &wire.AddRequest{Attachment: wire.Attachment{ContainerID: "c1"}}, &resp)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.IPs) != 1 || resp.IPs[0] != tt.wantIP {
					t.Errorf("answer %+v, want IP %s", resp, tt.wantIP)
				}
				if gotReq.Method != "POST" || gotReq.URL.Path != wire.PathAdd || !strings.Contains(string(gotBody), `"containerID":"c1"`) {
					t.Errorf("request %s %s %s", gotReq.Method, gotReq.URL.Path, gotBody)
				}
				return
			}
			var te *types.Error
			if !errors.As(err, &te) || te.Code != tt.wantCode || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want code %d containing %q", err, tt.wantCode, tt.wantErr)
			}
		})
	}
}
